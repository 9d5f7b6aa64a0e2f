print("dtop: not yet implemented")
