//! Models exported to ONNX — scikit-learn pipelines (skl2onnx), PyTorch
//! (`torch.onnx.export`) — run in pure Rust by tract.
//!
//! The model takes one float32 input `[N, n_features]` in the order of the
//! feature names given at import, and gives the fraud probability: an output
//! `[N, 2]` (the classes' probabilities: column 1) or `[N]` / `[N, 1]`
//! (already the fraud class's). Before tract reads the graph, what tract
//! lacks of scikit-learn's exports is rewritten into standard operators:
//! `Scaler` (ai.onnx.ml) becomes `Sub` and `Mul`, and a `ZipMap` after the
//! probabilities is dropped (the tensor before it is the output). Only the
//! chosen output is kept, so the rest of the graph (labels, other heads) is
//! pruned.
//!
//! A missing value (NaN) is refused: runtimes disagree on what a graph
//! makes of one (onnxruntime gives NaN for scikit-learn's logistic
//! regression where tract gives a probability), so no answer is the honest one.
//!
//! Reasons come from occlusion: each feature in turn is set to its median
//! over the reference rows given at import, and its contribution is the
//! change of the log-odds (`logit(p) − logit(p with the median)`), in one
//! batch of `n_features + 1` rows — model-agnostic, exact for what it says,
//! and not additive as TreeSHAP is.

use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::ModelError;

/// Probabilities are kept away from 0 and 1 by this much for the log-odds.
const CLAMP: f64 = 1e-12;
/// How far outside [0, 1] a float32 output may land (rounding) and still be a probability.
const PROBABILITY_SLACK: f64 = 1e-6;

/// A checked ONNX model ready to run.
#[derive(Clone)]
pub struct OnnxModel {
    /// The file as given (saved with the artifact).
    bytes: Arc<[u8]>,
    plan: Arc<TypedRunnableModel>,
    /// Rows per call: `None` when the batch dimension is free.
    fixed_batch: Option<usize>,
    n_features: usize,
    /// The probability column of a `[N, 2]` output.
    column: Option<usize>,
    /// The output used (a graph output's name, as the model file gives it).
    output: String,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("n_features", &self.n_features)
            .field("output", &self.output)
            .field("fixed_batch", &self.fixed_batch)
            .finish_non_exhaustive()
    }
}

impl PartialEq for OnnxModel {
    fn eq(&self, other: &Self) -> bool {
        self.n_features == other.n_features && self.output == other.output && self.column == other.column
    }
}

fn invalid(error: impl std::fmt::Display) -> ModelError {
    ModelError::invalid(format!("ONNX: {error:#}"))
}

/// The float outputs of a model file, by name, for messages and the import's choice.
pub fn outputs(bytes: &[u8]) -> Result<Vec<String>, ModelError> {
    let proto = decode(bytes)?;
    Ok(graph(&proto)?.output.iter().map(|output| output.name.clone()).collect())
}

fn decode(bytes: &[u8]) -> Result<pb::ModelProto, ModelError> {
    onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|error| invalid(format!("not an ONNX model: {error}")))
}

fn graph(proto: &pb::ModelProto) -> Result<&pb::GraphProto, ModelError> {
    proto.graph.as_ref().ok_or_else(|| invalid("the model has no graph"))
}

impl OnnxModel {
    /// Reads `bytes` for `n_features` inputs, using `output` (default: the
    /// one named like probabilities, else the only one), and checks it on a
    /// row of zeros.
    pub fn load(bytes: &[u8], n_features: usize, output: Option<&str>) -> Result<Self, ModelError> {
        if n_features == 0 {
            return Err(invalid("no features"));
        }
        let mut proto = decode(bytes)?;
        let chosen = choose_output(graph(&proto)?, output)?;
        let graph = proto.graph.as_mut().ok_or_else(|| invalid("the model has no graph"))?;
        rewrite(graph, &chosen)?;
        let inputs: Vec<&pb::ValueInfoProto> = graph
            .input
            .iter()
            .filter(|input| !graph.initializer.iter().any(|init| init.name == input.name))
            .collect();
        if inputs.len() != 1 {
            return Err(invalid(format!(
                "the model takes {} inputs; fraudlens gives one float tensor [N, {n_features}]",
                inputs.len()
            )));
        }
        check_input(inputs[0], n_features)?;
        check_class_labels(graph)?;
        let model = onnx()
            .model_for_proto_model(&proto)
            .map_err(|error| invalid(format!("reading the graph: {error:#}")))?;
        let (plan, fixed_batch) = plan(model, n_features)?;
        let mut loaded = Self {
            bytes: Arc::from(bytes),
            plan,
            fixed_batch,
            n_features,
            column: None,
            output: chosen,
        };
        // the output's shape decides the column: probe one row
        let probe = loaded.run(&vec![0.0; n_features], 1)?;
        loaded.column = match probe.shape() {
            [1, 2] => Some(1),
            [1] | [1, 1] => None,
            shape => {
                return Err(invalid(format!(
                    "output {:?} has shape {shape:?} for one row: expected [N, 2] (class probabilities) \
                     or [N] / [N, 1] (the fraud probability)",
                    loaded.output
                )));
            }
        };
        let p = loaded.predict(&vec![0.0; n_features], 1)?;
        if !(0.0..=1.0).contains(&p[0]) {
            return Err(invalid(format!(
                "output {:?} gives {} for a row of zeros: not a probability (export the model with its \
                 sigmoid or softmax)",
                loaded.output, p[0]
            )));
        }
        Ok(loaded)
    }

    /// The model file as given.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The output used.
    pub fn output(&self) -> &str {
        &self.output
    }

    /// Inputs per row.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    fn run(&self, rows: &[f64], n_rows: usize) -> Result<Tensor, ModelError> {
        let values: Vec<f32> = rows.iter().map(|&x| x as f32).collect();
        let input = Tensor::from_shape(&[n_rows, self.n_features], &values).map_err(invalid)?;
        let mut outputs = self.plan.run(tvec!(input.into())).map_err(invalid)?;
        let output = outputs.pop().ok_or_else(|| invalid("no output"))?;
        output
            .into_tensor()
            .cast_to::<f32>()
            .map(std::borrow::Cow::into_owned)
            .map_err(invalid)
    }

    /// The fraud probability of each of `n_rows` row-major rows.
    pub fn predict(&self, rows: &[f64], n_rows: usize) -> Result<Vec<f64>, ModelError> {
        if rows.len() != n_rows * self.n_features {
            return Err(invalid(format!(
                "{} values for {n_rows} rows of {} features",
                rows.len(),
                self.n_features
            )));
        }
        // what a graph makes of NaN differs between runtimes (onnxruntime and
        // tract disagree on scikit-learn's linear models): a missing value is refused
        if let Some(at) = rows.iter().position(|x| x.is_nan()) {
            return Err(ModelError::InvalidData(format!(
                "row {}: input {} is missing; an ONNX model needs every feature",
                at / self.n_features,
                at % self.n_features
            )));
        }
        let mut out = Vec::with_capacity(n_rows);
        let step = self.fixed_batch.unwrap_or(n_rows.max(1));
        for (chunk_idx, chunk) in rows.chunks(step * self.n_features).enumerate() {
            let n = chunk.len() / self.n_features;
            let tensor = self.run(chunk, n)?;
            let view = tensor.to_plain_array_view::<f32>().map_err(invalid)?;
            let flat: Vec<f32> = view.iter().copied().collect();
            let per_row = if self.column.is_some() { 2 } else { 1 };
            if flat.len() != n * per_row {
                return Err(invalid(format!(
                    "output {:?} has {} values for {n} rows: expected {per_row} per row",
                    self.output,
                    flat.len()
                )));
            }
            for row in 0..n {
                let p = f64::from(flat[row * per_row + self.column.unwrap_or(0)]);
                // float32 sums of probabilities may pass 1 by a rounding step
                let p = if (-PROBABILITY_SLACK..=1.0 + PROBABILITY_SLACK).contains(&p) {
                    p.clamp(0.0, 1.0)
                } else {
                    return Err(ModelError::InvalidData(format!(
                        "row {}: the ONNX model gives {p}, which is not a probability",
                        chunk_idx * step + row
                    )));
                };
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Per-feature contributions to the log-odds of `row` by occlusion with `medians`.
    pub fn occlusion(&self, row: &[f64], medians: &[f64]) -> Result<(f64, Vec<f64>), ModelError> {
        let n = self.n_features;
        if row.len() != n || medians.len() != n {
            return Err(invalid(format!(
                "{} values and {} medians for {n} features",
                row.len(),
                medians.len()
            )));
        }
        let mut rows = Vec::with_capacity((n + 1) * n);
        rows.extend_from_slice(row);
        for idx in 0..n {
            rows.extend_from_slice(row);
            rows[(idx + 1) * n + idx] = medians.get(idx).copied().unwrap_or(f64::NAN);
        }
        let p = self.predict(&rows, n + 1)?;
        let logit = |p: f64| {
            let p = p.clamp(CLAMP, 1.0 - CLAMP);
            (p / (1.0 - p)).ln()
        };
        let base = logit(p[0]);
        Ok((p[0], p[1..].iter().map(|&q| base - logit(q)).collect()))
    }
}

/// The output to use: the one asked for, else one named like probabilities, else the only one.
fn choose_output(graph: &pb::GraphProto, asked: Option<&str>) -> Result<String, ModelError> {
    let names: Vec<&str> = graph.output.iter().map(|output| output.name.as_str()).collect();
    if let Some(asked) = asked {
        return names
            .iter()
            .find(|name| **name == asked)
            .map(|name| (*name).to_owned())
            .ok_or_else(|| invalid(format!("no output {asked:?}: the model's outputs are {names:?}")));
    }
    if let Some(name) = names.iter().find(|name| name.to_ascii_lowercase().contains("prob")) {
        return Ok((*name).to_owned());
    }
    match names.as_slice() {
        [one] => Ok((*one).to_owned()),
        _ => Err(invalid(format!(
            "the model has outputs {names:?}: name the fraud probability's with --onnx-output"
        ))),
    }
}

/// Rewrites what tract cannot read (scikit-learn's `Scaler`, `ZipMap`) and
/// keeps `output` alone; returns the name of the tensor that is the output.
fn rewrite(graph: &mut pb::GraphProto, output: &str) -> Result<String, ModelError> {
    // a ZipMap turns the probabilities into a list of maps: its input is the tensor wanted
    let mut tensor = output.to_owned();
    if let Some(zipmap) = graph
        .node
        .iter()
        .find(|node| node.op_type == "ZipMap" && node.output.contains(&tensor))
    {
        tensor = zipmap
            .input
            .first()
            .cloned()
            .ok_or_else(|| invalid("a ZipMap without input"))?;
    }
    graph.node.retain(|node| node.op_type != "ZipMap");
    let mut nodes = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        if node.op_type != "Scaler" {
            nodes.push(node);
            continue;
        }
        let floats = |name: &str| -> Vec<f32> {
            node.attribute
                .iter()
                .find(|attribute| attribute.name == name)
                .map(|attribute| attribute.floats.clone())
                .unwrap_or_default()
        };
        let (offset, scale) = (floats("offset"), floats("scale"));
        let (Some(input), Some(out)) = (node.input.first(), node.output.first()) else {
            return Err(invalid("a Scaler without input or output"));
        };
        let constant = |suffix: &str, values: Vec<f32>| pb::TensorProto {
            name: format!("{out}__fraudlens_{suffix}"),
            dims: vec![values.len() as i64],
            data_type: pb::tensor_proto::DataType::Float as i32,
            float_data: values,
            ..Default::default()
        };
        let offset = constant("offset", if offset.is_empty() { vec![0.0] } else { offset });
        let scale = constant("scale", if scale.is_empty() { vec![1.0] } else { scale });
        let shifted = format!("{out}__fraudlens_shifted");
        nodes.push(pb::NodeProto {
            input: vec![input.clone(), offset.name.clone()],
            output: vec![shifted.clone()],
            op_type: "Sub".to_owned(),
            name: format!("{}__sub", node.name),
            ..Default::default()
        });
        nodes.push(pb::NodeProto {
            input: vec![shifted, scale.name.clone()],
            output: vec![out.clone()],
            op_type: "Mul".to_owned(),
            name: format!("{}__mul", node.name),
            ..Default::default()
        });
        graph.initializer.push(offset);
        graph.initializer.push(scale);
    }
    graph.node = nodes;
    let info = graph
        .output
        .iter()
        .chain(&graph.value_info)
        .find(|info| info.name == tensor)
        .cloned()
        .unwrap_or_else(|| pb::ValueInfoProto {
            name: tensor.clone(),
            ..Default::default()
        });
    graph.output = vec![pb::ValueInfoProto {
        name: tensor.clone(),
        // the type of a ZipMap's output is no tensor's: let tract infer it
        r#type: info.r#type.filter(|_| tensor == output),
        ..info
    }];
    Ok(tensor)
}

/// The runnable plan, with a free batch dimension when the model allows it.
fn plan(model: InferenceModel, n_features: usize) -> Result<(Arc<TypedRunnableModel>, Option<usize>), ModelError> {
    let batch = model.symbols.sym("N");
    let free = model
        .clone()
        .with_input_fact(0, f32::fact([batch.to_dim(), n_features.to_dim()]).into())
        .and_then(|model| model.into_optimized())
        .and_then(|model| model.into_runnable());
    match free {
        Ok(plan) => Ok((plan, None)),
        Err(free_error) => {
            let fixed = model
                .with_input_fact(0, f32::fact([1, n_features]).into())
                .and_then(|model| model.into_optimized())
                .and_then(|model| model.into_runnable())
                .map_err(|error| {
                    invalid(format!(
                        "the graph cannot be run on [N, {n_features}] ({free_error:#}) nor on [1, {n_features}] ({error:#})"
                    ))
                })?;
            Ok((fixed, Some(1)))
        }
    }
}

/// The input is float32 and, when its width is declared, `n_features` wide:
/// a feature list of another length would shift every column.
fn check_input(input: &pb::ValueInfoProto, n_features: usize) -> Result<(), ModelError> {
    let Some(pb::type_proto::Value::TensorType(tensor)) = input.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Ok(());
    };
    if tensor.elem_type != pb::tensor_proto::DataType::Float as i32 {
        return Err(invalid(format!(
            "input {:?} is not float32 (ONNX type {}): export it with a float input",
            input.name, tensor.elem_type
        )));
    }
    let dims: Vec<Option<i64>> = tensor
        .shape
        .iter()
        .flat_map(|shape| &shape.dim)
        .map(|dim| match dim.value {
            Some(pb::tensor_shape_proto::dimension::Value::DimValue(value)) => Some(value),
            _ => None,
        })
        .collect();
    match dims.as_slice() {
        [] | [_, None] => Ok(()),
        [_, Some(width)] if usize::try_from(*width).ok() == Some(n_features) => Ok(()),
        [_, Some(width)] => Err(invalid(format!(
            "input {:?} takes {width} features and {n_features} names were given: the list must \
             name the model's columns, in order",
            input.name
        ))),
        _ => Err(invalid(format!(
            "input {:?} has {} dimensions: expected [N, features]",
            input.name,
            dims.len()
        ))),
    }
}

/// A classifier's classes must be 0 and 1 in that order, so that column 1
/// of its probabilities is the fraud class.
fn check_class_labels(graph: &pb::GraphProto) -> Result<(), ModelError> {
    for node in &graph.node {
        for attribute in &node.attribute {
            let ok = match attribute.name.as_str() {
                "classlabels_ints" | "classlabels_int64s" => matches!(attribute.ints.as_slice(), [0, 1] | []),
                "classlabels_strings" => {
                    let labels: Vec<&[u8]> = attribute.strings.iter().map(Vec::as_slice).collect();
                    matches!(labels.as_slice(), [b"0", b"1"] | [])
                }
                _ => true,
            };
            if !ok {
                return Err(invalid(format!(
                    "{} {:?} has classes other than 0 and 1 in that order: train it on 0 (legitimate) \
                     and 1 (fraud) so that column 1 is the fraud probability",
                    node.op_type, node.name
                )));
            }
        }
    }
    Ok(())
}
