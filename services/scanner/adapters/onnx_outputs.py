"""What an ONNX classifier's graph says about its outputs and tensors (used by :mod:`onnx_model`).

scikit-learn exports hide their probabilities behind a ZipMap (a sequence of maps, not a tensor); binary
classifiers often give one column (the positive class's logit or sigmoid) instead of one per class; a
two-class SVMClassifier's scores put the first class's decision in the second column; and an added graph output
needs its element type, which a float16 model or a cast inside the graph changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

Arr = np.ndarray[Any, Any]


def zipmap_sources(model: onnx.ModelProto) -> dict[str, str]:
    """ZipMap output name -> its input, the float [N, classes] probabilities behind the sequence of maps."""
    return {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "ZipMap" and n.input and n.output}


def expose_zipmap_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """skl2onnx classifiers return probabilities as a ZipMap (a sequence of maps, not a tensor); on a
    copy of the model, make the ZipMap's input a graph output, declared [N, number of class labels]."""
    known = {o.name for o in model.graph.output}
    zips = {n.input[0]: n for n in model.graph.node if n.op_type == "ZipMap" and n.input and n.input[0] not in known}
    if not zips:
        return model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for name, n in zips.items():
        labels = next((len(a.ints) or len(a.strings) for a in n.attribute if a.name.startswith("classlabels")), 0)
        m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["N", labels or None]))
    return m


def reversed_svm_columns(model: onnx.ModelProto, output: str) -> bool:
    """Whether ``output`` is, behind casts and identities, the scores of a two-class SVMClassifier without
    probabilities. onnxruntime writes those as ``[-d, d]`` where ``d > 0`` means the *first* class (its own label
    output says so, and scikit-learn's ``decision_function`` is ``-d``), so read as class columns they are
    swapped: a binary ``SVC`` exported by skl2onnx looked as if it got every clean input wrong."""
    producers = {o: n for n in model.graph.node for o in n.output}
    name, node = output, producers.get(output)
    while node is not None and node.op_type in ("Cast", "Identity") and node.input:
        name, node = node.input[0], producers.get(node.input[0])
    if node is None or node.op_type != "SVMClassifier" or list(node.output).index(name) != 1:
        return False
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    labels = attrs.get("classlabels_ints") or attrs.get("classlabels_strings") or []
    return len(labels) == 2 and bool(attrs.get("vectors_per_class")) and not attrs.get("prob_a")


def inferred_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every intermediate tensor ONNX shape inference can type (none when it fails)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is best effort here: the caller falls back to the input's type
        return {}
    return {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info if v.type.tensor_type.elem_type}


def two_class_logits(out: Arr, sigmoid: bool) -> Arr:
    """A single column (positive class logit, or its sigmoid) as two-class logits [0, z]."""
    col = np.asarray(out, dtype=np.float64)[:, :1]
    if sigmoid:
        p = np.clip(col, 1e-6, 1.0 - 1e-6)
        col = np.log(p) - np.log1p(-p)
    return np.concatenate([np.zeros_like(col), col], axis=1).astype(np.float32)
