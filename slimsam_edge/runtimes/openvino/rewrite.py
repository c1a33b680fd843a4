"""In-memory rewrites of a read ``ov.Model`` before it is compiled: the same function, a layout the
CPU plugin runs faster. The verified bytes on disk are never changed.

:func:`banded_upscaling`: the transposed-convolution upscaling that feeds such a contraction (SAM's
mask decoder: 256 x 64 x 64 -> 32 x 256 x 256 through two 2x2 stride-2 transposed convolutions,
a channel layer norm and GELUs) is computed in horizontal bands, each band's intermediates small
enough to stay in cache, and the band results concatenated. A stride-equal-kernel transposed
convolution has no halo, and every other op of the chain is per pixel, so the bands are exact.

:func:`channel_means`: a channel mean exported as a product with a constant 1/C row (a MatMul, or a
one-output 1x1 convolution: what ONNX Runtime runs fast, see ``models/factored_decoder.py``) becomes
OpenVINO's ReduceMean over that axis again, which its CPU plugin runs far faster than either product.

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
#: ops :func:`banded_upscaling` may split into horizontal bands (each is per pixel along the height,
#: the transposed convolutions only when their kernel equals their stride)
BANDABLE = ELEMENTWISE | {"ConvolutionBackpropData", "ReduceMean"}
#: largest intermediate of one band (bytes at fp32) :func:`banded_upscaling` aims for
BAND_BYTES = 2 << 20


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


def _replace(node: Any, new: Any) -> None:
    """Put ``new`` (under ``node``'s name) where ``node``'s first output was used."""
    new.set_friendly_name(node.get_friendly_name())
    node.output(0).replace(new.output(0))


def _validated(model: Any, rewritten: int) -> int:
    """``rewritten``, after re-inferring ``model``'s types and shapes when anything was."""
    if rewritten:
        model.validate_nodes_and_infer_types()
    return rewritten


def _contractions(model: Any) -> list[tuple[Any, Any, Any, int]]:
    """``(matmul, A, x, channels)`` of every contraction :func:`_contraction` finds in ``model``."""
    found = []
    for node in model.get_ordered_ops():
        if node.get_type_name() == "MatMul" and (match := _contraction(node)) is not None:
            found.append((node, *match))
    return found


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
    for node, a, x, c in _contractions(model):
        nhwc = ops.transpose(x, np.array([0, 2, 3, 1], np.int64))
        rows = ops.reshape(nhwc, np.array([0, -1, c], np.int64), special_zero=True)  # b x HW x C
        product = ops.matmul(rows, a, False, True)  # b x HW x K
        _replace(node, ops.transpose(product, np.array([0, 2, 1], np.int64)))  # b x K x HW, as before
        rewritten += 1
    return _validated(model, rewritten)


def _depends_on_parameter(output: Any) -> bool:
    todo, seen = [output.get_node()], set()
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.get_type_name() == "Parameter":
            return True
        todo += [v.get_node() for v in node.input_values()]
    return False


def _per_pixel(node: Any, side: list[tuple[int, Any]]) -> bool:
    """Whether ``node`` (in :data:`BANDABLE`) treats rows independently given its side inputs
    ``(input index, output)`` (constants, weights, axes)."""
    kind = node.get_type_name()
    if kind == "ConvolutionBackpropData":
        attrs = node.get_attributes()
        weights = _static_dims(node.input_value(1))
        return (node.get_input_size() == 2 and weights is not None and len(weights) == 4
                and list(attrs["strides"]) == weights[2:] and not any(attrs["pads_begin"]) and not any(attrs["pads_end"])
                and set(attrs["dilations"]) == {1} and not any(attrs.get("output_padding", [])))
    if kind == "ReduceMean":
        axes = node.input_value(1).get_node()
        if axes.get_type_name() != "Constant":
            return False
        rank = node.get_input_partial_shape(0).rank.get_length()
        return all(int(a) % rank in (0, 1) for a in np.ravel(axes.get_data()))
    for _, value in side:  # element-wise: a side operand must broadcast along the height
        dims = _static_dims(value)
        if dims is None or (len(dims) >= 2 and dims[-2] != 1):
            return False
    return True


def _upscaling_chain(x: Any) -> tuple[Any, list[Any]] | None:
    """``(root output, nodes in order)`` of the per-pixel chain from one 4-D root to ``x``, or None."""
    chain, todo, roots = set(), [x.get_node()], set()
    while todo:
        node = todo.pop()
        if node in chain:
            continue
        if node.get_type_name() not in BANDABLE:
            return None
        chain.add(node)
        side = []
        for i, value in enumerate(node.input_values()):
            source = value.get_node()
            if not _depends_on_parameter(value):
                side.append((i, value))
            elif source.get_type_name() in BANDABLE:
                todo.append(source)
            else:
                roots.add((source, value.get_index()))
        if not _per_pixel(node, side):
            return None
    if len(roots) != 1 or not any(n.get_type_name() == "ConvolutionBackpropData" for n in chain):
        return None
    source, index = roots.pop()
    root = source.output(index)
    dims = _static_dims(root)
    if dims is None or len(dims) != 4 or dims[2] < 1:
        return None
    return root, chain


def _band_count(chain: set, height: int) -> int:
    largest = max(int(np.prod([d for d in _static_dims(n.output(0))[1:]])) for n in chain)
    bands = 1
    while largest * 4 / bands > BAND_BYTES and height % (bands * 2) == 0:
        bands *= 2
    return bands


def _clone(node: Any, inputs: list[Any]) -> Any:
    """``node`` made again (same type, opset and attributes) on ``inputs``."""
    from openvino.utils.node_factory import NodeFactory

    return NodeFactory(node.get_type_info().version_id).create(node.get_type_name(), inputs, node.get_attributes())


def _fold_constant_reshapes(model: Any) -> None:
    """Replace each Reshape of a Constant whose output shape is static (a bias broadcast to a shape an
    ONNX export computes from a ShapeOf) by that Constant reshaped: what a static compile would fold."""
    from openvino import opset13 as ops

    for node in list(model.get_ordered_ops()):
        if node.get_type_name() != "Reshape" or node.input_value(0).get_node().get_type_name() != "Constant":
            continue
        shape = node.get_output_partial_shape(0)
        if shape.is_static:
            data = np.asarray(node.input_value(0).get_node().get_data())
            node.output(0).replace(ops.constant(data.reshape([d.get_length() for d in shape])).output(0))


def banded_upscaling(model: Any) -> int:
    """Rewrite, in place, each ``A @ reshape(upscaled)`` contraction (as :func:`channel_last_contractions`
    finds them) whose upscaled features come from one 4-D input through stride-equal-kernel
    transposed convolutions and per-pixel ops, so the chain runs in horizontal bands of the input
    (enough that a band's largest intermediate is ~:data:`BAND_BYTES`) and the contracted bands are
    concatenated: the same values. Returns how many chains were split.

    Example:
        >>> import numpy as np
        >>> import openvino as ov
        >>> from openvino import opset13 as ops
        >>> x = ops.parameter([1, 64, 64, 64], np.float32)
        >>> a = ops.parameter([1, 4, 32], np.float32)
        >>> up = ops.convolution_backprop_data(x, np.ones((64, 32, 4, 4), np.float32), [4, 4],
        ...                                    pads_begin=[0, 0], pads_end=[0, 0], dilations=[1, 1])
        >>> flat = ops.reshape(ops.relu(up), np.array([1, 32, 256 * 256], np.int64), special_zero=False)
        >>> model = ov.Model([ops.matmul(a, flat, False, False)], [x, a])
        >>> banded_upscaling(model), [n.get_type_name() for n in model.get_ordered_ops()].count("ConvolutionBackpropData")
        (1, 4)
    """
    from openvino import opset13 as ops

    rewritten = 0
    found = _contractions(model)
    if found:
        _fold_constant_reshapes(model)
    for node, a, x, c in found:
        got = _upscaling_chain(x)
        if got is None:
            continue
        root, chain = got
        dims_x = _static_dims(x)
        height, (_, _, out_h, out_w) = _static_dims(root)[2], dims_x
        if out_h < 1 or out_w < 1 or any(d < 1 for d in dims_x[1:]):
            continue
        outside = [t.get_node() for n in chain for out in n.outputs() for t in out.get_target_inputs()
                   if t.get_node() not in chain and t.get_node() != node.input_value(1).get_node()]
        if any(o.get_type_name() not in ("ShapeOf",) for o in outside):
            continue  # an intermediate is used elsewhere: it has to exist whole
        bands = _band_count(chain, height)
        if bands == 1:
            continue
        order = [n for n in model.get_ordered_ops() if n in chain]
        step = height // bands
        pieces = []
        for b in range(bands):
            mapped = {(root.get_node(), root.get_index()): ops.slice(
                root, np.array([b * step], np.int64), np.array([(b + 1) * step], np.int64),
                np.array([1], np.int64), np.array([2], np.int64)).output(0)}
            for n in order:
                inputs = [mapped.get((v.get_node(), v.get_index()), v) for v in n.input_values()]
                clone = _clone(n, inputs)
                for i in range(n.get_output_size()):
                    mapped[(n, i)] = clone.output(i)
            band = mapped[(x.get_node(), x.get_index())]
            flat = ops.reshape(band, np.array([0, c, -1], np.int64), special_zero=True)
            product = ops.matmul(a, flat, False, False)  # b x K x (band rows x width)
            pieces.append(ops.reshape(product, np.array([0, 0, out_h // bands, out_w], np.int64), special_zero=True))
        joined = ops.reshape(ops.concat(pieces, 2), np.array([0, 0, out_h * out_w], np.int64), special_zero=True)
        for shape_of in outside:  # a ShapeOf of an intermediate: the batch from the root, the rest static
            source = shape_of.input_value(0)
            kind = shape_of.get_output_element_type(0)
            dtype = np.int64 if kind.get_type_name() == "i64" else np.int32
            batch = ops.gather(ops.shape_of(root, kind.get_type_name()), np.array([0], dtype), np.array(0, dtype))
            rest = ops.constant(np.array(_static_dims(source)[1:], dtype))
            shape_of.output(0).replace(ops.concat([batch, rest], 0).output(0))
        _replace(node, joined)
        rewritten += 1
    return _validated(model, rewritten)


def _uniform(node: Any, shape_ok: Any) -> float | None:
    """The value of a Constant ``node`` whose shape passes ``shape_ok`` and whose entries are all 1/C
    (C its element count); else None."""
    if node.get_type_name() != "Constant":
        return None
    values = np.asarray(node.get_data(), dtype=np.float64)
    if not shape_ok(values.shape) or values.size < 2 or not np.allclose(values, 1.0 / values.size, rtol=1e-6, atol=0):
        return None
    return 1.0 / values.size


def _mean_axis(node: Any) -> tuple[Any, int] | None:
    """``(x, axis)`` when ``node`` computes the mean of ``x`` over ``axis`` (kept) as a product with a
    constant uniform row: ``MatMul(1/C [1 x C], x [... x C x N])`` or ``Convolution(x [B x C x ...],
    1/C [1 x C x 1 x ...])`` with unit strides, no padding, no dilation."""
    kind = node.get_type_name()
    if kind == "MatMul":
        attrs = node.get_attributes()
        x = node.input_value(1)
        dims = _static_dims(x)
        row = _uniform(node.input_value(0).get_node(), lambda s: len(s) == 2 and s[0] == 1)
        if attrs.get("transpose_a") or attrs.get("transpose_b") or row is None or dims is None or len(dims) < 2:
            return None
        return (x, len(dims) - 2) if dims[-2] == round(1 / row) else None
    if kind == "Convolution":
        attrs = node.get_attributes()
        x = node.input_value(0)
        dims = _static_dims(x)
        kernel = _uniform(node.input_value(1).get_node(),
                          lambda s: len(s) >= 3 and s[0] == 1 and all(k == 1 for k in s[2:]))
        if (kernel is None or dims is None or len(dims) < 3 or dims[1] != round(1 / kernel)
                or set(attrs["strides"]) != {1} or set(attrs["dilations"]) != {1}
                or any(attrs["pads_begin"]) or any(attrs["pads_end"])):
            return None
        return x, 1
    return None


def channel_means(model: Any) -> int:
    """Rewrite, in place, every channel mean computed as a product with a constant uniform row
    (:func:`_mean_axis`) into ``ReduceMean(x, axis, keep_dims)``: the same values. Returns the count.

    Example:
        >>> import numpy as np
        >>> import openvino as ov
        >>> from openvino import opset13 as ops
        >>> x = ops.parameter([2, 8, 5], np.float32)
        >>> mean = ops.matmul(ops.constant(np.full((1, 8), 1 / 8, np.float32)), x, False, False)
        >>> model = ov.Model([mean], [x])
        >>> channel_means(model), [op.get_type_name() for op in model.get_ordered_ops()][1:]
        (1, ['Constant', 'ReduceMean', 'Result'])
    """
    from openvino import opset13 as ops

    rewritten = 0
    for node in list(model.get_ordered_ops()):
        found = _mean_axis(node)
        if found is None:
            continue
        x, axis = found
        _replace(node, ops.reduce_mean(x, np.array([axis], np.int64), True))
        rewritten += 1
    return _validated(model, rewritten)
