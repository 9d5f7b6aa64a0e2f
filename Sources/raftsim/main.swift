print("raftsim")
