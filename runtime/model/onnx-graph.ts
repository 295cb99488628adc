import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
type NodeAttrs = Record<string, number | number[] | string | Float32Array>;

/**
 * ONNX IR 8 (ONNX 1.10 schema, what onnx-proto encodes) for opset 17; opset 23 (RMSNormalization,
 * RotaryEmbedding, Attention) needs IR 10, which onnxruntime reads from the same fields.
 */
export const DEFAULT_OPSET = 17;
/** onnxruntime's contrib domain (GroupQueryAttention, SkipSimplifiedLayerNormalization, RotaryEmbedding...). */
export const MS_DOMAIN = 'com.microsoft';

export interface GraphBuilderOptions {
  /** Version of the default ('') domain; 17 keeps ReduceMean's axes attribute, 18+ takes axes as an input. */
  opset?: number;
}

/**
 * A minimal ONNX graph builder: named values, initializers from Float32Array, nodes with attributes.
 * Hush's stage graphs are built from HF weights at load time, so nothing is exported from Python.
 */
export class GraphBuilder {
  private readonly nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  private readonly inits: InstanceType<typeof onnx.TensorProto>[] = [];
  private readonly inputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly outputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly initNames = new Set<string>();
  private readonly domains = new Set<string>();
  private counter = 0;
  readonly opset: number;

  constructor(readonly name: string, opts: GraphBuilderOptions = {}) {
    this.opset = opts.opset ?? DEFAULT_OPSET;
  }

  fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  input(name: string, type: 'float' | 'int64', dims: (number | string)[]): string {
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  output(name: string, type: 'float' | 'int64', dims: (number | string)[]): void {
    this.outputs.push(valueInfo(name, type, dims));
  }

  /** A float32 initializer; the bytes are copied into the model. */
  float(name: string, data: Float32Array, dims: number[]): string {
    if (this.initNames.has(name)) return name;
    this.initNames.add(name);
    this.inits.push(onnx.TensorProto.create({
      name, dims, dataType: onnx.TensorProto.DataType.FLOAT,
      rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    }));
    return name;
  }

  int64(name: string, values: number[], dims: number[] = [values.length]): string {
    if (this.initNames.has(name)) return name;
    this.initNames.add(name);
    const buf = new BigInt64Array(values.map((v) => BigInt(v)));
    this.inits.push(onnx.TensorProto.create({
      name, dims, dataType: onnx.TensorProto.DataType.INT64, rawData: new Uint8Array(buf.buffer),
    }));
    return name;
  }

  int32(name: string, values: number[], dims: number[] = [values.length]): string {
    if (this.initNames.has(name)) return name;
    this.initNames.add(name);
    const buf = new Int32Array(values);
    this.inits.push(onnx.TensorProto.create({
      name, dims, dataType: onnx.TensorProto.DataType.INT32, rawData: new Uint8Array(buf.buffer),
    }));
    return name;
  }

  scalar(value: number): string {
    const name = `const_f_${value}`;
    return this.float(name, new Float32Array([value]), []);
  }

  /**
   * Add a node; returns its (first) output name. An empty string among `inputs` or `outputs` is
   * ONNX's "optional input/output left out". `domain` '' is the standard opset; anything else
   * (e.g. MS_DOMAIN) is imported at version 1 when the model is encoded.
   */
  op(opType: string, inputs: string[], attrs: NodeAttrs = {}, outputs?: string[] | number, domain = ''): string {
    const outs = Array.isArray(outputs) ? outputs
      : Array.from({ length: outputs ?? 1 }, () => this.fresh(opType.toLowerCase()));
    if (domain !== '') this.domains.add(domain);
    this.nodes.push(onnx.NodeProto.create({
      opType, input: inputs, output: outs, name: this.fresh('n_' + opType), domain,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    }));
    return outs[0];
  }

  /** Same as op() but returns every output. */
  opN(opType: string, inputs: string[], count: number, attrs: NodeAttrs = {}, domain = ''): string[] {
    const outs = Array.from({ length: count }, () => this.fresh(opType.toLowerCase()));
    this.op(opType, inputs, attrs, outs, domain);
    return outs;
  }

  /** A node of onnxruntime's com.microsoft domain; `outputs` as in op(). Returns every output name. */
  contrib(opType: string, inputs: string[], attrs: NodeAttrs, outputs: string[] | number = 1): string[] {
    const outs = Array.isArray(outputs) ? outputs
      : Array.from({ length: outputs }, () => this.fresh(opType.toLowerCase()));
    this.op(opType, inputs, attrs, outs, MS_DOMAIN);
    return outs;
  }

  /** Rename a value to a graph output name via Identity. */
  alias(from: string, to: string): void {
    this.op('Identity', [from], {}, [to]);
  }

  encode(): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: this.opset >= 23 ? 10 : 8,
      producerName: 'hush',
      opsetImport: [{ domain: '', version: this.opset }, ...[...this.domains].map((domain) => ({ domain, version: 1 }))],
      graph: onnx.GraphProto.create({
        name: this.name, node: this.nodes, initializer: this.inits, input: this.inputs, output: this.outputs,
      }),
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function valueInfo(name: string, type: 'float' | 'int64', dims: (number | string)[]) {
  const elemType = type === 'float' ? onnx.TensorProto.DataType.FLOAT : onnx.TensorProto.DataType.INT64;
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
}

function attribute(name: string, v: number | number[] | string | Float32Array) {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return onnx.AttributeProto.create({ name, type: T.STRING, s: new TextEncoder().encode(v) });
  if (Array.isArray(v)) return onnx.AttributeProto.create({ name, type: T.INTS, ints: v });
  if (v instanceof Float32Array) return onnx.AttributeProto.create({ name, type: T.FLOATS, floats: Array.from(v) });
  if (Number.isInteger(v) && !Object.is(v, -0)) return onnx.AttributeProto.create({ name, type: T.INT, i: v });
  return onnx.AttributeProto.create({ name, type: T.FLOAT, f: v });
}
