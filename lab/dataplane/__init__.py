"""The lab's data plane: processes on loopback that carry real traffic."""
