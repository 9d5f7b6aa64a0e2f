// RaftStorage
