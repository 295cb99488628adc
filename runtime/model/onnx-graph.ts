import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
type NodeAttrs = Record<string, number | number[] | string | Float32Array>;

/** ONNX IR 8 (ONNX 1.10 schema, what onnx-proto encodes); opset 17 keeps ReduceMean's axes attribute. */
const IR_VERSION = 8;
const OPSET = 17;

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
  private counter = 0;

  constructor(readonly name: string) {}

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

  scalar(value: number): string {
    const name = `const_f_${value}`;
    return this.float(name, new Float32Array([value]), []);
  }

  /** Add a node; returns its (first) output name. */
  op(opType: string, inputs: string[], attrs: NodeAttrs = {}, outputs?: string[] | number): string {
    const outs = Array.isArray(outputs) ? outputs
      : Array.from({ length: outputs ?? 1 }, () => this.fresh(opType.toLowerCase()));
    this.nodes.push(onnx.NodeProto.create({
      opType, input: inputs, output: outs, name: this.fresh('n_' + opType),
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    }));
    return outs[0];
  }

  /** Same as op() but returns every output. */
  opN(opType: string, inputs: string[], count: number, attrs: NodeAttrs = {}): string[] {
    const outs = Array.from({ length: count }, () => this.fresh(opType.toLowerCase()));
    this.op(opType, inputs, attrs, outs);
    return outs;
  }

  /** Rename a value to a graph output name via Identity. */
  alias(from: string, to: string): void {
    this.op('Identity', [from], {}, [to]);
  }

  encode(): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: IR_VERSION,
      producerName: 'hush',
      opsetImport: [{ domain: '', version: OPSET }],
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
