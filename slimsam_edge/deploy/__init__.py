"""On the device: reference I/O every bundle carries, ``verify`` (torch-free) and ``build`` (engines
a device makes for itself, with the fingerprint of the machine that built them).

Torch-free: this package imports only numpy, the bundle, the device profiles and the runtimes.
"""
