import { basename } from 'node:path';
import { SafetensorsReader } from './safetensors.ts';
import { expectedTensors, type ModelConfig } from './config.ts';
import { MissingTensorError, TensorShapeError } from './errors.ts';

/**
 * The weights of one checkpoint, read lazily tensor by tensor (a stage reads only its layers),
 * every tensor checked against the shape the config implies.
 */
export class ModelWeights {
  private readonly expected: Map<string, number[]>;
  private readonly cache = new Map<string, Float32Array>();

  constructor(readonly config: ModelConfig, readonly reader: SafetensorsReader) {
    this.expected = expectedTensors(config);
    for (const [name, shape] of this.expected) {
      if (!reader.has(name)) {
        const files = reader.files.map((f) => basename(f)).join(', ') || 'the weights';
        throw new MissingTensorError(`${files}: tensor ${name} (expected shape [${shape}] from config.json) is missing`, reader.files[0], name);
      }
      const got = reader.info(name);
      if (got.shape.length !== shape.length || got.shape.some((x, i) => x !== shape[i])) {
        throw new TensorShapeError(`${got.file}: tensor ${name} has shape [${got.shape}], expected [${shape}] from config.json`, got.file, name);
      }
    }
  }

  /** Float32 values of a tensor, row-major in its HF shape. Cached: callers must not mutate. */
  get(name: string): Float32Array {
    let t = this.cache.get(name);
    if (!t) {
      if (!this.expected.has(name)) throw new MissingTensorError(`weights: ${name} is not a tensor of this architecture`, undefined, name);
      t = this.reader.readFloat32(name);
      this.cache.set(name, t);
    }
    return t;
  }

  shape(name: string): number[] {
    return this.reader.info(name).shape;
  }

  lmHead(): Float32Array {
    return this.get(this.config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
  }

  /** Stored bytes of a layer's tensors (the scheduler's memory cost, at the stored dtype). */
  storedBytes(prefix: string): number {
    let n = 0;
    for (const name of this.expected.keys()) if (name.startsWith(prefix)) n += this.reader.info(name).byteLength;
    return n;
  }

  /** Drop cached float32 copies (after the graphs that need them are built). */
  release(): void {
    this.cache.clear();
  }
}
