print("dctl: not yet implemented")
