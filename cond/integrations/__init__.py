"""Optional bridges to other libraries (PyTorch), imported only when asked for."""
