// dnode: arrives with the node issue.
print("dnode: not yet implemented")
