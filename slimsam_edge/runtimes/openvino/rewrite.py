"""In-memory rewrites of a read ``ov.Model`` before it is compiled: the same function, a layout the
CPU plugin runs faster. The verified bytes on disk are never changed.

:func:`channel_last_contractions`: a convolution's output contracted over its channels by a
MatMul, as exported from PyTorch (``A @ x.reshape(b, c, h * w)``: SAM's mask decoder multiplies
the upscaled image features by each mask token's hypernetwork vector this way), makes OpenVINO's
CPU plugin reorder the whole feature map out of the channel-last layout its convolutions compute
in (a full pass over the 32 x 256 x 256 features at 1024 px) before the MatMul. Rewritten as
``(x.permute(0, 2, 3, 1).reshape(b, h * w, c) @ Aᵀ)ᵀ``, the transpose matches the layout the
convolution already produced and only the small ``b x K x hw`` result is transposed. ONNX Runtime
would pay for that transpose instead, which is why the rewrite lives here and not in the export.

Example:
    >>> import numpy as np
    >>> import openvino as ov
    >>> from openvino import opset13 as ops
    >>> x = ops.parameter([1, 3, 8, 8], np.float32, name="x")
    >>> a = ops.parameter([1, 2, 4], np.float32, name="a")
    >>> conv = ops.convolution(x, np.ones((4, 3, 1, 1), np.float32), [1, 1], [0, 0], [0, 0], [1, 1])
    >>> flat = ops.reshape(ops.gelu(conv, "erf"), np.array([1, 4, 64], np.int64), special_zero=False)
    >>> model = ov.Model([ops.matmul(a, flat, False, False)], [x, a])
    >>> channel_last_contractions(model)
    1
    >>> sorted(op.get_type_name() for op in model.get_ordered_ops() if op.get_type_name() == "Transpose")
    ['Transpose', 'Transpose']
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: ops that compute in a channel-last layout on OpenVINO's CPU plugin
CONVOLUTIONS = frozenset({"Convolution", "GroupConvolution", "ConvolutionBackpropData",
                          "GroupConvolutionBackpropData"})
#: element-wise ops the plugin computes in their producer's layout (an ONNX GELU arrives as Erf,
#: Multiply and Add; a convolution's bias as an Add)
ELEMENTWISE = frozenset({"Gelu", "Relu", "Sigmoid", "Tanh", "Swish", "HSwish", "Clamp", "Elu", "Mish", "SoftPlus",
                         "Abs", "Erf", "Add", "Subtract", "Multiply", "Divide", "Power", "Sqrt"})
#: how many element-wise ops :func:`_from_convolution` looks through
SEARCH_LIMIT = 16


def _static_dims(output: Any) -> list[int] | None:
    shape = output.get_partial_shape()
    if shape.rank.is_dynamic:
        return None
    return [d.get_length() if d.is_static else -1 for d in shape]


def _from_convolution(output: Any) -> bool:
    """Whether ``output`` is a convolution's, possibly through element-wise ops of the same shape
    (at most :data:`SEARCH_LIMIT` of them)."""
    shape = output.get_partial_shape()
    todo, seen = [output.get_node()], 0
    while todo and seen < SEARCH_LIMIT:
        node = todo.pop()
        kind = node.get_type_name()
        if kind in CONVOLUTIONS:
            return True
        if kind not in ELEMENTWISE or node.get_output_partial_shape(0) != shape:
            continue
        seen += 1
        todo += [v.get_node() for v in node.input_values() if v.get_node().get_type_name() != "Constant"]
    return False


def _contraction(matmul: Any) -> tuple[Any, Any, int] | None:
    """``(A, x, channels)`` when ``matmul`` is ``A (b x K x C) @ reshape(x: b x C x H x W -> b x C x HW)``
    with x a convolution's output, C static and neither side transposed; else ``None``."""
    attrs = matmul.get_attributes()
    if attrs.get("transpose_a") or attrs.get("transpose_b"):
        return None
    a, flat = matmul.input_value(0), matmul.input_value(1)
    if flat.get_node().get_type_name() != "Reshape":
        return None
    x = flat.get_node().input_value(0)
    dims, out, a_dims = _static_dims(x), _static_dims(flat), _static_dims(a)
    if dims is None or out is None or a_dims is None or len(dims) != 4 or len(out) != 3 or len(a_dims) != 3:
        return None
    c = dims[1]
    if c < 1 or out[1] != c or a_dims[2] != c or not _from_convolution(x):
        return None
    spatial = dims[2] * dims[3] if dims[2] > 0 and dims[3] > 0 else -1
    if spatial != out[2] or (dims[0] != out[0]):  # -1 == -1: both dynamic is fine (same tensor)
        return None
    return a, x, c


def channel_last_contractions(model: Any) -> int:
    """Rewrite, in place, every ``A @ reshape(conv_out, b x C x HW)`` MatMul of ``model`` (an
    ``ov.Model``) into ``transpose(reshape(transpose(conv_out, NHWC), b x HW x C) @ Aᵀ)``: the same
    values, computed where the convolution's layout already is. Returns how many were rewritten.

    Example:
        >>> import numpy as np
        >>> import openvino as ov
        >>> from openvino import opset13 as ops
        >>> x = ops.parameter([2, 5, 4, 4], np.float32)
        >>> a = ops.parameter([2, 3, 5], np.float32)
        >>> flat = ops.reshape(x, np.array([2, 5, 16], np.int64), special_zero=False)  # not a convolution's
        >>> channel_last_contractions(ov.Model([ops.matmul(a, flat, False, False)], [x, a]))
        0
    """
    from openvino import opset13 as ops

    rewritten = 0
    for node in list(model.get_ordered_ops()):
        if node.get_type_name() != "MatMul":
            continue
        found = _contraction(node)
        if found is None:
            continue
        a, x, c = found
        nhwc = ops.transpose(x, np.array([0, 2, 3, 1], np.int64))
        rows = ops.reshape(nhwc, np.array([0, -1, c], np.int64), special_zero=True)  # b x HW x C
        product = ops.matmul(rows, a, False, True)  # b x HW x K
        result = ops.transpose(product, np.array([0, 2, 1], np.int64))  # b x K x HW, as before
        result.set_friendly_name(node.get_friendly_name())
        node.output(0).replace(result.output(0))
        rewritten += 1
    if rewritten:
        model.validate_nodes_and_infer_types()
    return rewritten
