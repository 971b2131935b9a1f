"""Params, MACs (true and paper conventions) and activation memory read from an ONNX graph.

The figures follow :mod:`crd_edge.analysis.macs` and :mod:`crd_edge.analysis.memory` exactly, so that
the graph of an exported model counts the same as the torch model it came from:

* **params**: elements of the initializers the nodes use, each counted once: floating-point
  tensors, and the integer weights a ``DequantizeLinear`` reads (int8 QDQ files). Scales and zero
  points of Q/DQ nodes, a BatchNorm's running statistics (torch buffers), integer shape vectors
  and ``Constant`` nodes are not parameters (the ones/zeros the exporter writes for a
  non-affine InstanceNorm are ``Constant`` nodes). Parameters the exporter merged because their
  values were equal (an ``Identity`` node per extra use) count apart, as torch counts them.
* **true MACs**: ``Conv``, ``ConvTranspose``, ``MatMul`` and ``Gemm`` multiply-adds (torch's
  formulas: a transposed conv costs ``input_pixels x C_in x C_out/groups x k^2``; biases are
  free), plus normalisation element-wise work: ``InstanceNormalization`` 4 ops per element, 5
  with an affine transform; ``BatchNormalization`` 1 op per element at inference (4 with
  ``training_mode``), +1 with an affine transform. Affine means the scale/bias are parameters
  (initializers) or hold anything but ones/zeros: the exporter writes the ones/zeros of a
  non-affine norm as ``Constant`` nodes (a graph optimiser that turns those into initializers
  makes them count as parameters and affine). The exporter folds an eval-mode BatchNorm
  that follows a conv into the conv's weights, so such a graph has fewer norm ops than the
  torch model; no crd-edge default model has one.
* **paper MACs**: convolutions only, a transposed conv counted as
  ``output_elements x C_in x k^2`` (torchprofile).
* **activations**: ``act_total_bytes`` sums the bytes of every tensor the nodes compute from
  the input, in the graph's own dtypes (float32 for fp32 exports, float16 inside fp16 ones; a
  QDQ file's Q/DQ outputs count as the separate tensors they are in the file). Tensors computed
  from constants alone (the shape vectors around each reflect ``Pad``) are folded like a
  runtime folds them, not counted. ``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze`` and
  ``Identity`` alias their input (no new bytes). ``act_peak_bytes`` walks the nodes in their
  (topological) order, allocating each node's outputs while its inputs are alive and freeing a
  tensor after its last consumer; graph outputs stay. The input is excluded (``input_bytes``).
  ONNX has no in-place ops, so a graph counts the outputs of ReLUs that the torch model runs in
  place: its totals are above :func:`crd_edge.analysis.memory.count_activations` by those.

Export rewrites are folded back: the ``narrow_conv_to_space_to_depth`` rewrite
(:mod:`crd_edge.export.rewrites`) turns the last 7x7 conv into a stride-``r`` conv with ``r*r``
times the channels, whose kernel holds the original one at ``r*r`` offsets (zeros elsewhere),
and ``DepthToSpace``. Where the weights prove that structure, params and MACs count the conv it
replaces, as the torch model does; ``graph_params`` and ``graph_conv_macs`` keep what the file
stores and executes (default student at 256: 2x the MACs of that conv, +15% in all).
Reflection pads are exported as ``Pad`` (no MACs) or, rewritten, as ``Slice`` + ``Concat``
(no MACs either); they change only the activation figures. (``convtranspose_k3_to_k4`` is a
TFLite-only rewrite; an ONNX graph holding it would count the zero-extended k4 kernel.)

Shapes come from ``onnx.shape_inference`` after the constant sub-graph is evaluated by onnx's
reference evaluator (the reflect pads' sizes are computed by nodes that shape inference cannot
see through; with DequantizeLinear of opsets 13-17 written here: it implements 19 on). A
graph with dynamic input dimensions needs ``size``.

Why not ``onnx-tool`` (1.0.1, evaluated on the default student's export): its parameter count
matches, but its ``ConvTranspose`` MACs use the weight's ``C_out/groups`` dimension where the
cost depends on ``C_in`` (2x the true count and half the paper count for the student's 64->32
and 32->16 upsamplers), its ``Conv`` adds one op per output element for the bias, its
InstanceNorm is 7 ops per element, and its memory figures sum weights and outputs per node
(plus an allocator plan with 64-byte padding), not a peak of live activations. Mapping it to
these conventions would recompute every counted op from the shapes, which is this module.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crd_edge.analysis.macs import MacsReport
from crd_edge.analysis.memory import ActivationMemory
from crd_edge.errors import UserError

ALIAS_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
RANDOM_OPS = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}


@dataclass(frozen=True)
class OnnxCounts:
    macs: MacsReport              # params and MACs, export rewrites folded back (torch-comparable)
    memory: ActivationMemory
    graph_params: int             # parameter elements stored in the file
    graph_conv_macs: int          # conv/matmul MACs the graph executes as written
    folded: tuple[str, ...]       # rewrites recognised and counted as the layer they replace

    def as_dict(self) -> dict:
        return {**self.macs.as_dict(), **self.memory.as_dict(), "graph_params": self.graph_params,
                "graph_conv_macs": self.graph_conv_macs, "folded": list(self.folded)}


def count_onnx(model, size: int | tuple[int, int] | None = None) -> OnnxCounts:
    """Counts of the ONNX graph ``model`` (a path or a ``ModelProto``) for one input.

    ``size`` (``H`` or ``(H, W)``) fixes dynamic spatial input dimensions (a dynamic batch
    becomes 1); a static input shape is used as it is."""
    import onnx
    if isinstance(model, (str, Path)):
        try:
            model = onnx.load(str(model))
        except Exception as exc:  # DecodeError and friends: not an ONNX file
            raise UserError(f"{model}: not a readable ONNX file ({type(exc).__name__})") from None
    graph = _Graph(model, size)
    return graph.count()


class _Graph:
    def __init__(self, model, size) -> None:
        import onnx
        from onnx import helper, numpy_helper, shape_inference

        self.numpy_helper = numpy_helper
        g = model.graph
        self.inits = {i.name: i for i in g.initializer}
        inputs = [i for i in g.input if i.name not in self.inits]
        if len(inputs) != 1:
            raise UserError(f"expected a graph with one input, found {len(inputs)}: "
                            f"{', '.join(i.name for i in inputs)}")
        self.input = onnx.ValueInfoProto()
        self.input.CopyFrom(inputs[0])
        self.input_shape = _fix_input_shape(self.input, size)

        # Constant sub-graph: nodes whose inputs are all constants, evaluated once, like a
        # runtime's constant folding. Everything else depends on the input.
        const = set(self.inits)
        self.const_nodes, self.nodes = [], []
        for node in _topological(g.node, {*self.inits, self.input.name}):
            if (node.op_type not in RANDOM_OPS and all(i in const for i in node.input if i)
                    and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)):
                self.const_nodes.append(node)
                const.update(o for o in node.output if o)
            else:
                self.nodes.append(node)
        self.const = const
        self.const_producer = {o: n for n in self.const_nodes for o in n.output}
        needed = sorted({i for n in self.nodes for i in n.input if i in const and i not in self.inits}
                        | {o.name for o in g.output if o.name in const and o.name not in self.inits})
        self.values = self._evaluate_constants(model, needed)

        # Shape inference on the graph of input-dependent nodes, folded constants as initializers.
        used = {i for n in self.nodes for i in n.input}
        initializers = [self.inits[name] for name in used if name in self.inits]
        initializers += [numpy_helper.from_array(self.values[name], name) for name in needed]
        outputs = [helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, None) for o in g.output]
        folded = helper.make_model(
            helper.make_graph(self.nodes, g.name or "graph", [self.input], outputs, initializer=initializers),
            opset_imports=model.opset_import, ir_version=model.ir_version)
        try:
            inferred = shape_inference.infer_shapes(folded, data_prop=True)
        except Exception as exc:
            raise UserError(f"ONNX shape inference failed: {str(exc).splitlines()[0][:200]}") from None
        self.shapes, self.dtypes = {}, {}
        for vi in [*inferred.graph.value_info, *inferred.graph.output, self.input]:
            t = vi.type.tensor_type
            if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
                self.shapes[vi.name] = tuple(d.dim_value for d in t.shape.dim)
            self.dtypes[vi.name] = t.elem_type
        for init in initializers:
            self.shapes[init.name] = tuple(init.dims)
            self.dtypes[init.name] = init.data_type
        self.outputs = [o.name for o in g.output]
        self.consumers: dict[str, list] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.param_elements = self.params()  # read by space_to_depth() while counting MACs

    # -- helpers -------------------------------------------------------------------------
    def _evaluate_constants(self, model, names: list[str]) -> dict:
        """The values of constant tensors, computed on the constant sub-graph by onnx's own
        reference evaluator (numpy): counting opens no runtime session, and these sub-graphs are
        shape arithmetic, small enough for it."""
        if not names:
            return {}
        from onnx import helper
        from onnx.reference import ReferenceEvaluator

        used = {i for n in self.const_nodes for i in n.input}
        sub = helper.make_model(
            helper.make_graph(self.const_nodes, "constants", [], [helper.make_empty_tensor_value_info(n) for n in names],
                              initializer=[self.inits[name] for name in used if name in self.inits]),
            opset_imports=model.opset_import, ir_version=model.ir_version)
        from onnx.reference.op_run import OpRun

        class DequantizeLinear(OpRun):
            # Written here: the evaluator implements the operator from opset 19 only (it checks
            # the version's attributes), int8 exports use 13-17: (x - zero) * scale, the scale
            # per tensor or per channel along ``axis``.
            op_domain = ""

            def _run(self, x, scale, zero=None, axis=1, **later_opsets):  # block_size, output_dtype: 21+
                shape = [1] * x.ndim
                if scale.ndim:
                    shape[axis] = -1
                x = x.astype(np.float32) - (0 if zero is None else zero.astype(np.float32).reshape(shape))
                return ((x * scale.reshape(shape)).astype(scale.dtype),)

        try:
            results = ReferenceEvaluator(sub, new_ops=[DequantizeLinear]).run(names, {})
        except Exception as exc:  # the evaluator's own exception types
            raise UserError(f"could not evaluate the graph's constant nodes: {str(exc).splitlines()[0][:200]}") from None
        return dict(zip(names, results))

    def value(self, name: str):
        """The value of a constant tensor (initializer or folded), or None."""
        if name in self.values:
            return self.values[name]
        if name in self.inits:
            return self.numpy_helper.to_array(self.inits[name])
        return None

    def shape(self, name: str) -> tuple[int, ...]:
        if name not in self.shapes:
            producer = next((n for n in self.nodes if name in n.output), None)
            where = f" (output of {producer.op_type} {producer.name!r})" if producer is not None else ""
            raise UserError(f"ONNX shape inference left the shape of {name!r}{where} unknown; "
                            "is the input shape static (or --size given)?")
        return self.shapes[name]

    def nbytes(self, name: str) -> int:
        from onnx import helper
        itemsize = helper.tensor_dtype_to_np_dtype(self.dtypes[name]).itemsize
        return math.prod(self.shape(name)) * itemsize

    def _initializer_of(self, name: str) -> str | None:
        """The initializer a constant tensor is, directly or through constant ``Identity``
        nodes (the exporter's de-duplication of parameters with equal values)."""
        while name not in self.inits:
            node = self.const_producer.get(name)
            if node is None or node.op_type != "Identity":
                return None
            name = node.input[0]
        return name

    def param_sources(self, name: str) -> list[str]:
        """The parameter tensors behind a constant tensor: itself, or a DequantizeLinear's input."""
        if self._initializer_of(name) is not None:
            return [name]
        producer = self.const_producer.get(name)
        if (producer is not None and producer.op_type == "DequantizeLinear"
                and self._initializer_of(producer.input[0]) is not None):
            return [producer.input[0]]
        return []

    def _norm_affine(self, scale: str, bias: str) -> bool:
        """Whether a norm's scale/bias are the model's own (torch's ``weight is not None``):
        parameters (initializers) or any value other than ones/zeros. The exporter writes the
        ones/zeros of a non-affine norm as ``Constant`` nodes."""
        if any(self.param_sources(name) for name in (scale, bias) if name):
            return True
        s, b = self.value(scale), self.value(bias) if bias else None
        return not (s is not None and bool((s == 1).all()) and (b is None or bool((b == 0).all())))

    # -- counting ------------------------------------------------------------------------
    def params(self) -> dict[str, int]:
        """Parameter tensors, by the name the nodes read them under -> elements. A tensor read
        by several nodes counts once (a tied weight); parameters the exporter merged because
        their values were equal (one initializer, an ``Identity`` per other use) count apart,
        as torch counts them."""
        from onnx import TensorProto
        floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
        params = {}
        for node in [*self.const_nodes, *self.nodes]:
            if node.op_type == "Identity" and node.output[0] in self.const_producer:
                continue  # counted where its output is read
            for index, name in enumerate(node.input):
                init = self._initializer_of(name) if name else None
                if init is None:
                    continue
                if node.op_type in QDQ_OPS:
                    if index != 0 or node.op_type != "DequantizeLinear":
                        continue  # scales and zero points
                elif node.op_type == "BatchNormalization" and index >= 3:
                    continue  # running mean and variance: buffers in torch
                elif self.inits[init].data_type not in floats:
                    continue  # shape vectors, indices
                params[name] = math.prod(self.inits[init].dims)
        return params

    def space_to_depth(self, conv) -> tuple[int, int, list[str], int] | None:
        """(MACs, params, stored initializers, stored elements) of the conv that the
        space-to-depth rewrite replaced, when ``conv`` and its consumers are that rewrite."""
        import numpy as np
        attrs = _attributes(conv)
        w = self.value(conv.input[1])
        strides = attrs.get("strides", [1, 1])
        if (w is None or w.ndim != 4 or len(set(strides)) != 1 or strides[0] < 2 or attrs.get("group", 1) != 1
                or any(d != 1 for d in attrs.get("dilations", [1]))
                or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
            return None
        r = strides[0]
        out_ch, in_ch, kh_big, kw_big = w.shape
        if out_ch % (r * r) or kh_big < r or kw_big < r:
            return None
        bias_names, tensor = [], conv.output[0]
        bias = self.value(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        if bias is not None:
            bias_names.append(conv.input[2])
        while True:
            users = self.consumers.get(tensor, [])
            if len(users) != 1 or tensor in self.outputs:
                return None
            node = users[0]
            if node.op_type in QDQ_OPS:  # int8 QDQ files quantise between the layers
                tensor = node.output[0]
                continue
            if node.op_type == "Add" and bias is None:
                other = node.input[1] if node.input[0] == tensor else node.input[0]
                bias = self.value(other)
                if bias is None or bias.size != out_ch:
                    return None
                bias_names.append(other)
                tensor = node.output[0]
                continue
            attrs = _attributes(node)
            if node.op_type != "DepthToSpace" or attrs.get("blocksize") != r or attrs.get("mode", b"DCR") not in (b"CRD", "CRD"):
                return None
            break
        kh, kw = kh_big - r + 1, kw_big - r + 1
        base = w[0::r * r, :, :kh, :kw]
        for a in range(r):
            for b in range(r):
                expected = np.zeros_like(w[0::r * r])
                expected[:, :, a:a + kh, b:b + kw] = base
                if not np.array_equal(w[a * r + b::r * r], expected):
                    return None
        if bias is not None and not (bias.reshape(-1, r * r) == bias.reshape(-1, r * r)[:, :1]).all():
            return None
        c = out_ch // (r * r)
        macs = math.prod(self.shape(node.output[0])) * in_ch * kh * kw
        params = c * in_ch * kh * kw + (c if bias is not None else 0)
        stored = [s for name in [conv.input[1], *bias_names] for s in self.param_sources(name)]
        return macs, params, stored, sum(self.param_elements.get(s, 0) for s in stored)

    def macs(self) -> tuple[int, int, int, int, int, list[str]]:
        """(conv MACs, norm ops, paper MACs, graph conv MACs, params delta, folded)."""
        conv = norm = paper = graph_conv = 0
        params_delta, folded = 0, []
        for node in self.nodes:
            op = node.op_type
            if op in ("Conv", "ConvTranspose"):
                x, w, y = self.shape(node.input[0]), self.shape(node.input[1]), self.shape(node.output[0])
                if op == "Conv":
                    true = math.prod(y) * w[1] * math.prod(w[2:])
                    graph_conv += true
                    rewrite = self.space_to_depth(node)
                    if rewrite is not None:
                        true, params, stored, stored_elements = rewrite
                        params_delta += params - stored_elements
                        folded.append(f"narrow_conv_to_space_to_depth: {node.name or node.output[0]}")
                    conv += true
                    paper += true
                else:  # ONNX ConvTranspose weight: (C_in, C_out / groups, k...)
                    true = x[0] * math.prod(x[2:]) * w[0] * w[1] * math.prod(w[2:])
                    conv += true
                    graph_conv += true
                    paper += math.prod(y) * w[0] * math.prod(w[2:])
            elif op in ("MatMul", "Gemm"):
                a = self.shape(node.input[0])
                k = a[-1] if op == "MatMul" else a[0 if _attributes(node).get("transA", 0) else 1]
                macs = math.prod(self.shape(node.output[0])) * k
                conv += macs
                graph_conv += macs
            elif op == "InstanceNormalization":
                affine = self._norm_affine(node.input[1], node.input[2])
                norm += math.prod(self.shape(node.input[0])) * (4 + affine)
            elif op == "BatchNormalization":
                training = _attributes(node).get("training_mode", 0)
                affine = self._norm_affine(node.input[1], node.input[2])
                norm += math.prod(self.shape(node.input[0])) * ((4 if training else 1) + affine)
        return conv, norm, paper, graph_conv, params_delta, folded

    def activations(self) -> ActivationMemory:
        buffer_of = {self.input.name: self.input.name}
        for node in self.nodes:  # aliases share their source's buffer
            for out in filter(None, node.output):
                alias = node.op_type in ALIAS_OPS and node.input[0] in buffer_of
                buffer_of[out] = buffer_of[node.input[0]] if alias else out
        uses = Counter(b for n in self.nodes for b in {buffer_of[i] for i in n.input if i in buffer_of})
        pinned = {buffer_of[o] for o in self.outputs if o in buffer_of} | {self.input.name}
        live = peak = total = 0
        sizes = {}
        for node in self.nodes:
            fresh = [o for o in node.output if o and buffer_of[o] == o]
            for out in fresh:
                sizes[out] = self.nbytes(out)
                live += sizes[out]
                total += sizes[out]
            peak = max(peak, live)
            done = {buffer_of[i] for i in node.input if i in buffer_of}
            for buf in done:
                uses[buf] -= 1
            for buf in done | set(fresh):
                if uses[buf] <= 0 and buf not in pinned and buf in sizes:
                    live -= sizes.pop(buf)
        return ActivationMemory(peak, total, self.nbytes(self.input.name), self.input_shape)

    def count(self) -> OnnxCounts:
        graph_params = sum(self.param_elements.values())
        conv, norm, paper, graph_conv, params_delta, folded = self.macs()
        report = MacsReport(graph_params + params_delta, conv, norm, paper, self.input_shape)
        return OnnxCounts(report, self.activations(), graph_params, graph_conv, tuple(folded))


def _topological(nodes, available: set[str]) -> list:
    """``nodes`` in an order where every tensor is produced before it is read (the file's
    order where it already is: onnxruntime's fp16 converter appends the input Cast last)."""
    nodes, done, order = list(nodes), set(available) | {""}, []
    produced = {o for n in nodes for o in n.output}
    while nodes:
        pending = []
        for node in nodes:
            if all(i in done or i not in produced for i in node.input):
                order.append(node)
                done.update(node.output)
            else:
                pending.append(node)
        if len(pending) == len(nodes):
            raise UserError(f"the ONNX graph has a cycle through {pending[0].op_type} {pending[0].name!r}")
        nodes = pending
    return order


def _attributes(node) -> dict:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _fix_input_shape(value_info, size) -> tuple[int, ...]:
    """The input's static shape; dynamic dims filled (batch 1, spatial from ``size``) in place."""
    dims = value_info.type.tensor_type.shape.dim
    dynamic = [i for i, d in enumerate(dims) if not (d.HasField("dim_value") and d.dim_value > 0)]
    if dynamic:
        if size is None and dynamic != [0]:
            raise UserError(f"input {value_info.name!r} has dynamic dimensions; give a size (e.g. --size 256)")
        height, width = (size, size) if isinstance(size, int) else tuple(size or (0, 0))
        spatial = [i for i in dynamic if i != 0]
        if len(spatial) not in (0, 2) or (spatial and len(dims) == 4 and spatial not in ([2, 3], [1, 2])):
            raise UserError(f"input {value_info.name!r}: cannot tell which dynamic dimensions are height and width")
        for i, value in zip(spatial, (height, width)):
            dims[i].Clear()
            dims[i].dim_value = value
        if 0 in dynamic:
            dims[0].Clear()
            dims[0].dim_value = 1
    return tuple(d.dim_value for d in dims)
