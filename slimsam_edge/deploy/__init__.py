"""On the device: reference I/O every bundle carries, ``verify`` (torch-free) and ``build`` (engines
a device makes for itself, with the fingerprint of the machine that built them).

- :mod:`.reference_io`: ``reference/io.npz`` -- preprocessed images and prompts with the fp32
  outputs export computed (:func:`~.reference_io.write_reference`, :func:`~.reference_io.load_reference`);
- :mod:`.verify`: those cases through a runtime, per graph and encoder -> decoder end to end,
  against :data:`~.verify.DEFAULT_THRESHOLDS` (:func:`~.verify.verify_artifacts`,
  :func:`~.verify.verify_bundle`).

Torch-free: this package imports only numpy, the bundle, the device profiles and the runtimes.
"""
