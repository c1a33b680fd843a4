"""The OpenVINO backend: runner, ONNX → IR converter, fp16/bf16/int8/int8-bf16 recipes, NNCF dataset.

Example:
    >>> BACKEND.name, type(BACKEND.converter).__name__, sorted(BACKEND._recipes)
    ('openvino', 'IrConverter', ['bf16', 'fp16', 'int8', 'int8-bf16'])
"""

from ...manifest_schema import count, texts
from ..plugin import RECIPE_EXTRA, Backend
from .convert import IrConverter
from .devices import describe_devices
from .quantize import NncfOptions
from .recipes import OvBf16, OvFp16, OvInt8, OvInt8Bf16
from .runner import OpenVinoRunner

#: what an OpenVINO artifact's ``extra`` may hold: descriptions its recipes write; its compile
#: properties (precision hint, threads, caching) come from the runner, never from the manifest
ARTIFACT_EXTRA = {
    **RECIPE_EXTRA,
    "subset_size": count(), "ignored_types": texts(), "ignored_names": texts(limit=100_000),  # NNCF int8
}

BACKEND = Backend(
    "openvino",
    runner=OpenVinoRunner,
    suffixes=(".xml",),
    converter=IrConverter(),
    recipes=(OvFp16, OvBf16, OvInt8, OvInt8Bf16),
    options=NncfOptions,
    extra="openvino",
    distributions=("openvino",),
    describe_devices=describe_devices,
    artifact_extra=ARTIFACT_EXTRA,
)
