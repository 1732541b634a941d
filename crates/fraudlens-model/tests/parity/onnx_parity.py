"""ONNX models as scikit-learn and PyTorch users export them, with
onnxruntime's probabilities for rows to score: the reference fraudlens's
ONNX runtime (tract) is checked against.

  onnx_parity.py generate DIR [--small]   write the models, rows and expected outputs to DIR
  onnx_parity.py compare EXPECTED SCORED   fraudlens score's probabilities against onnxruntime's (1e-5)

Models (each MODEL.onnx, MODEL.features.json, MODEL.rows.csv, MODEL.expected.csv):
- sklearn_pipeline: StandardScaler + LogisticRegression through skl2onnx, with
  its default outputs (label, and probabilities behind a ZipMap);
- sklearn_forest: a RandomForestClassifier (TreeEnsembleClassifier), ZipMap off;
- torch_mlp: a two-layer perceptron written as torch.onnx.export writes one
  (Gemm, Relu, Gemm, Sigmoid; input "input" with a dynamic batch axis, output
  "prob" [N, 1]) — the weights of a scikit-learn MLPClassifier, so that the
  model is a trained one without installing PyTorch.
"""
import csv
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

FEATURES = ["amount", "amount_ratio", "hour", "count_1d", "distance_km", "velocity", "risk", "age_days"]


def data(rng, n):
    x = np.column_stack([
        rng.gamma(2.0, 40.0, n),
        rng.lognormal(0.0, 0.6, n),
        rng.integers(0, 24, n),
        rng.poisson(3.0, n),
        rng.exponential(20.0, n),
        rng.normal(0.0, 1.0, n),
        rng.uniform(0.0, 1.0, n),
        rng.integers(1, 3000, n),
    ]).astype(np.float32)
    logit = -4.0 + 0.01 * x[:, 0] + 1.2 * x[:, 1] + 0.8 * x[:, 5] + 2.0 * x[:, 6] - 0.0005 * x[:, 7]
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    return x, y


def torch_style_mlp(mlp, scaler):
    """The graph torch.onnx.export writes for (x - mean) / std, then Linear-ReLU-Linear-Sigmoid."""
    (w1, w2), (b1, b2) = mlp.coefs_, mlp.intercepts_
    inits = [
        numpy_helper.from_array(scaler.mean_.astype(np.float32), "mean"),
        numpy_helper.from_array(scaler.scale_.astype(np.float32), "std"),
        numpy_helper.from_array(w1.T.astype(np.float32), "fc1.weight"),
        numpy_helper.from_array(b1.astype(np.float32), "fc1.bias"),
        numpy_helper.from_array(w2.T.astype(np.float32), "fc2.weight"),
        numpy_helper.from_array(b2.astype(np.float32), "fc2.bias"),
    ]
    nodes = [
        helper.make_node("Sub", ["input", "mean"], ["/Sub_output_0"], name="/Sub"),
        helper.make_node("Div", ["/Sub_output_0", "std"], ["/Div_output_0"], name="/Div"),
        helper.make_node("Gemm", ["/Div_output_0", "fc1.weight", "fc1.bias"], ["/fc1/Gemm_output_0"], name="/fc1/Gemm", transB=1),
        helper.make_node("Relu", ["/fc1/Gemm_output_0"], ["/relu/Relu_output_0"], name="/relu/Relu"),
        helper.make_node("Gemm", ["/relu/Relu_output_0", "fc2.weight", "fc2.bias"], ["/fc2/Gemm_output_0"], name="/fc2/Gemm", transB=1),
        helper.make_node("Sigmoid", ["/fc2/Gemm_output_0"], ["prob"], name="/Sigmoid"),
    ]
    graph = helper.make_graph(
        nodes, "main_graph",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", len(FEATURES)])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", 1])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def generate(out, small):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20261206)
    x, y = data(rng, 3000 if small else 20000)
    rows, _ = data(rng, 40 if small else 2000)
    rows[0] = 0.0  # a row of zeros
    rows[1] = np.median(x, axis=0)
    models = {}
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    models["sklearn_pipeline"] = to_onnx(pipe, x[:1], target_opset={"": 17, "ai.onnx.ml": 3})
    forest = RandomForestClassifier(n_estimators=15 if small else 60, max_depth=6, random_state=1).fit(x, y)
    models["sklearn_forest"] = to_onnx(forest, x[:1], options={id(forest): {"zipmap": False}},
                                       target_opset={"": 17, "ai.onnx.ml": 3})
    scaler = StandardScaler().fit(x)
    mlp = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=1).fit(scaler.transform(x), y)
    models["torch_mlp"] = torch_style_mlp(mlp, scaler)
    manifest = {"features": FEATURES, "models": {}}
    for name, model in models.items():
        path = os.path.join(out, f"{name}.onnx")
        onnx.save(model, path)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        outputs = [o.name for o in session.get_outputs()]
        prob_name = next((o for o in outputs if "prob" in o.lower()), outputs[0])
        result = session.run([prob_name], {session.get_inputs()[0].name: rows})[0]
        if isinstance(result, list):  # a ZipMap: a list of {class: probability}
            p = np.array([row[1] for row in result], dtype=np.float64)
        else:
            result = np.asarray(result, dtype=np.float64)
            p = result[:, 1] if result.ndim == 2 and result.shape[1] == 2 else result.reshape(-1)
        with open(os.path.join(out, f"{name}.rows.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(FEATURES)
            writer.writerows([[repr(float(v)) for v in row] for row in rows])
        with open(os.path.join(out, f"{name}.expected.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["probability"])
            writer.writerows([[repr(float(v))] for v in p])
        json.dump(FEATURES, open(os.path.join(out, f"{name}.features.json"), "w"))
        manifest["models"][name] = {"output": prob_name, "ops": sorted({n.op_type for n in model.graph.node})}
    manifest["versions"] = {"onnx": onnx.__version__, "onnxruntime": ort.__version__,
                            "skl2onnx": __import__("skl2onnx").__version__,
                            "scikit-learn": __import__("sklearn").__version__}
    json.dump(manifest, open(os.path.join(out, "manifest.json"), "w"), indent=1)
    print(f"wrote {', '.join(models)} to {out}")


def compare(expected_csv, scored_csv):
    expected = [float(row["probability"]) for row in csv.DictReader(open(expected_csv))]
    scored = [float(row["fraud_probability"]) for row in csv.DictReader(open(scored_csv))]
    if len(expected) != len(scored) or not scored:
        sys.exit(f"{scored_csv}: {len(scored)} rows scored, {len(expected)} expected")
    worst = max(abs(a - b) for a, b in zip(expected, scored))
    print(f"fraudlens score {os.path.basename(scored_csv)}: {len(scored)} rows, "
          f"max |fraudlens - onnxruntime| = {worst:.2e}")
    if worst > 1e-5:
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "generate":
        generate(sys.argv[2], "--small" in sys.argv[3:])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
