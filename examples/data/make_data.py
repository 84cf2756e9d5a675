#!/usr/bin/env python3
"""Split the Wisconsin Diagnostic Breast Cancer data into MedMesh example datasets.

Input: scikit-learn's copy of the UCI data, `sklearn/datasets/data/breast_cancer.csv`
(from the scikit-learn wheel: `pip download --no-deps scikit-learn`, then unzip).
Output (deterministic, seeded): a training split (used only to fit the example
models' weights), a small demo dataset with paths.yaml, and three hospital datasets
in the "raw" layout the example data preparator reads. Also writes both models'
weights. Pure Python, no numpy: run it again and you get the same bytes.
"""
import csv, math, os, random, sys

BASE = ["radius", "texture", "perimeter", "area", "smoothness", "compactness",
        "concavity", "concave_points", "symmetry", "fractal_dimension"]
FEATURES = [f"mean_{b}" for b in BASE] + [f"{b}_error" for b in BASE] + [f"worst_{b}" for b in BASE]
SPLITS = [("train", 149), ("demo", 30), ("hospital_a", 130), ("hospital_b", 130), ("hospital_c", 130)]
THRESHOLD_FEATURE = "worst_concave_points"

def load(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    n, d = int(rows[0][0]), int(rows[0][1])
    assert d == len(FEATURES)
    out = []
    for i, r in enumerate(rows[1:1 + n]):
        # scikit-learn's target: 0 = malignant, 1 = benign.
        out.append((f"case-{i:04d}", [float(x) for x in r[:d]], "malignant" if r[d] == "0" else "benign"))
    return out

def write_raw(root, cases):
    os.makedirs(f"{root}/raw/data", exist_ok=True)
    os.makedirs(f"{root}/raw/labels", exist_ok=True)
    with open(f"{root}/raw/data/cases.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["case_id"] + FEATURES)
        for cid, x, _ in cases:
            w.writerow([cid] + [repr(v) for v in x])
    with open(f"{root}/raw/labels/diagnosis.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["case_id", "diagnosis"])
        for cid, _, y in cases:
            w.writerow([cid, y])

def fit_logistic(xs, ys, epochs=2000, lr=0.1, l2=1e-3):
    d = len(xs[0])
    mean = [sum(x[j] for x in xs) / len(xs) for j in range(d)]
    std = [math.sqrt(sum((x[j] - mean[j]) ** 2 for x in xs) / len(xs)) or 1.0 for j in range(d)]
    zs = [[(x[j] - mean[j]) / std[j] for j in range(d)] for x in xs]
    w, b = [0.0] * d, 0.0
    for _ in range(epochs):
        gw, gb = [l2 * wj for wj in w], 0.0
        for z, y in zip(zs, ys):
            p = 1 / (1 + math.exp(-(sum(a * c for a, c in zip(w, z)) + b)))
            for j in range(d):
                gw[j] += (p - y) * z[j] / len(zs)
            gb += (p - y) / len(zs)
        w = [wj - lr * g for wj, g in zip(w, gw)]
        b -= lr * gb
    return mean, std, w, b

def main(src, out):
    cases = load(src)
    random.Random(20261129).shuffle(cases)
    at = 0
    parts = {}
    for name, n in SPLITS:
        parts[name] = cases[at:at + n]
        at += n
    assert at == len(cases)
    for name in ["demo", "hospital_a", "hospital_b", "hospital_c"]:
        write_raw(f"{out}/{name}", parts[name])
    with open(f"{out}/demo/paths.yaml", "w") as f:
        f.write("data_path: raw/data\nlabels_path: raw/labels\n")
    xs = [x for _, x, _ in parts["train"]]
    ys = [1.0 if y == "malignant" else 0.0 for _, _, y in parts["train"]]
    mean, std, w, b = fit_logistic(xs, ys)
    os.makedirs(f"{out}/../model_logistic/additional_files", exist_ok=True)
    with open(f"{out}/../model_logistic/additional_files/weights.csv", "w") as f:
        f.write("feature,mean,std,coef\n")
        for name, m, s, c in zip(FEATURES, mean, std, w):
            f.write(f"{name},{m:.9g},{s:.9g},{c:.9g}\n")
        f.write(f"bias,0,1,{b:.9g}\n")
    # The competing model: one feature, a threshold and a slope, chosen on the
    # training split by accuracy.
    j = FEATURES.index(THRESHOLD_FEATURE)
    best = max(sorted({x[j] for x in xs}),
               key=lambda t: sum((x[j] > t) == (y == 1.0) for x, y in zip(xs, ys)))
    os.makedirs(f"{out}/../model_threshold/additional_files", exist_ok=True)
    with open(f"{out}/../model_threshold/additional_files/weights.yaml", "w") as f:
        f.write(f"feature: {THRESHOLD_FEATURE}\nthreshold: {best:.9g}\nscale: 0.02\n")

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(__file__)))
