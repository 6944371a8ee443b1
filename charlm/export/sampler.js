// charlm's sampler in plain JavaScript: the model stepped one character at a time, in a Web Worker.
//
// It mirrors charlm/model.py and charlm/sampler.py: the embedding, the stacked LSTM/GRU/RNN in
// torch's gate order, a full head (W h + b) or an adaptive softmax (nn.AdaptiveLogSoftmaxWithLoss's
// log_prob, then the `rank` lookup back to id order); a seed primes the state from zero (an empty
// seed: the start of a line), greedy takes the argmax, sampling divides by the temperature, keeps
// the k likeliest (top-k) and the nucleus (top-p) and inverts the CDF at a uniform of torch's generator,
// as charlm does. Weights are fp32; the matrix products sum in fp32 (WebAssembly SIMD) or doubles (the
// plain loop), the softmax in doubles, so the log-probabilities match PyTorch's fp32 to a few 1e-6 nats
// (docs/export.md). A poem form or template (charlm/forms.py) keeps only the characters allowed at each
// position before the temperature, as charlm does.
//
// A ban (ids never drawn: the page's ban box, read as `charlm sample --ban` reads it) removes those ids
// before everything else, from a template's characters too.
//
// Messages in: load {meta, tensors (JSON text)}, logprobs {id, text}, generate {id, ...options}, stop.
// Messages out: ready, damaged {message} (the page's weights or description are not as exported),
// failed {message} (the sampler failed as it started, the file as exported), result {id, value},
// seed {id, text} (the seed as read, where it was read otherwise than typed: 'the' for an nfkc model's
// 'ｔhe', a form's '，' for ','), chunk {id, text}, done {id, text, reason, seconds, random_seed} (random_seed:
// the seed it drew with, given or drawn, so that a text can be written again; null where greedy draws nothing),
// error {id, message, param} (param: the option refused, "temperature", "form", "acrostic", "ban" ...; none
// for a seed the model cannot read or that breaks the form),
// failed {id, message} (the generation broke off: its chunks so far are all it wrote).
"use strict";

const SLICE_MS = 50;  // generate this long between looks at the message queue (so Stop is heard)
let model = null;
let stopRequested = false;
let last = null;  // the state after the last generation, so Continue needs no re-reading of the text

// --- weights -------------------------------------------------------------------------------------

function bytes(base64) {
  const text = atob(base64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

const HALF = (() => {  // every fp16 bit pattern as a float, once
  const table = new Float32Array(65536);
  for (let bits = 0; bits < 65536; bits++) {
    const sign = bits & 0x8000 ? -1 : 1, exponent = (bits >> 10) & 0x1f, fraction = bits & 0x3ff;
    if (exponent === 0) table[bits] = sign * fraction * 2 ** -24;
    else if (exponent === 31) table[bits] = fraction ? NaN : sign * Infinity;
    else table[bits] = sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
  }
  return table;
})();

// --- a page damaged after export ----------------------------------------------------------------
// A byte of the weights changed or cut off, or the description (meta) edited to another shape, wrote
// from other weights without a word, or never got ready: the weights' CRC-32 (html.py's; a page
// exported before it has none) and every tensor's shape are checked first, and what is wrong said.

const CRC_TABLE = Int32Array.from({ length: 256 }, (_, n) => {
  for (let k = 0; k < 8; k++) n = n & 1 ? 0xedb88320 ^ (n >>> 1) : n >>> 1;
  return n;
});

function crc32(text) {  // zlib.crc32 of the text's UTF-8
  const bytes = new TextEncoder().encode(text);
  let crc = -1;
  for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);  // an index: for-of took 4x as long
  return (crc ^ -1) >>> 0;
}

// Each tensor's shape, as the description (meta) makes the model: html.py's model_tensors.
function shapesOf(meta) {
  const H = meta.hidden, V = meta.vocab.chars.length, G = { lstm: 4, gru: 3, rnn: 1 }[meta.cell] * H;
  const shapes = { embed: [V, H] };
  for (let l = 0; l < meta.layers; l++) Object.assign(shapes, { [`w_ih${l}`]: [G, H], [`w_hh${l}`]: [G, H], [`b_ih${l}`]: [G], [`b_hh${l}`]: [G] });
  if (meta.head.kind === "full") return Object.assign(shapes, { head_w: [V, H], head_b: [V] });
  const { cutoffs, tail_widths: widths } = meta.head;
  shapes.head_w = [cutoffs[0] + cutoffs.length - 1, H];
  cutoffs.slice(0, -1).forEach((start, i) => Object.assign(shapes, { [`tail${i}_proj`]: [widths[i], H], [`tail${i}_out`]: [cutoffs[i + 1] - start, widths[i]] }));
  return shapes;
}

// The page's tensors, from their JSON text, once they are the ones exported and of the description's shapes,
// decoded (`decode`): whatever fails here is the file's damage; what fails after, the sampler's own.
function readWeights(meta, text) {
  if (meta.weights_crc32 != null && crc32(text) !== meta.weights_crc32) throw new Error("its weights are not the ones exported (a byte changed, or some cut off)");
  let stored;
  try { stored = JSON.parse(text); } catch (e) { throw new Error(`its weights (charlm-weights) are not JSON: ${e.message}`); }
  if (stored === null || typeof stored !== "object") throw new Error("its weights (charlm-weights) are not an object of tensors");
  const misfit = (says) => new Error(`its weights do not fit its description: ${says}`), dims = (shape) => shape.join("x");
  const shapes = shapesOf(meta), gates = shapes.w_ih0?.[0], V = meta.vocab.chars.length;
  if (!(gates > 0 && Number.isInteger(gates))) throw misfit(`${meta.layers} layers of ${meta.hidden} ${meta.cell} is no model charlm makes`);
  const head = meta.head;
  if (head.kind !== "full" && (head.cutoffs.at(-1) !== V || head.rank.length !== V)) throw misfit(`its adaptive head is for ${head.cutoffs.at(-1)} characters, the description has ${V}`);
  for (const [name, shape] of Object.entries(shapes)) {
    if (!stored[name]) throw misfit(`${name} is missing`);
    if (!Array.isArray(stored[name].shape)) throw misfit(`${name} has no shape`);
    if (dims(stored[name].shape) !== dims(shape)) throw misfit(`${name} is ${dims(stored[name].shape)}, the description needs ${dims(shape)}`);
  }
  const extra = Object.keys(stored).find((name) => !(name in shapes));
  if (extra) throw misfit(`${extra} is not in a ${meta.layers}-layer model`);
  return Object.fromEntries(Object.entries(stored).map(([name, tensor]) => [name, decode(tensor, name)]));
}

// A stored array's bytes, which must be `length`: one cut short read past its end, or failed to load.
function storedBytes(base64, length, what) {
  let raw = null;
  try { raw = bytes(base64); } catch (e) { /* not base64: said below */ }
  if (typeof base64 !== "string" || raw?.length !== length) throw new Error(`its weights' ${what} are not ${length} bytes of base64`);
  return raw;
}

// A stored tensor as a Float32Array: fp32 as is, fp16 widened, int8 times its row's scale.
function decode(tensor, name) {
  const size = { f32: 4, f16: 2, i8: 1 }[tensor.dtype], count = tensor.shape.reduce((a, b) => a * b, 1);
  if (!size) throw new Error(`its weights' ${name} are of type ${tensor.dtype}, not f32, f16 or i8`);
  const raw = storedBytes(tensor.data, count * size, name), shape = tensor.shape;
  if (tensor.dtype === "f32") return new Float32Array(raw.buffer);
  if (tensor.dtype === "f16") {
    const half = new Uint16Array(raw.buffer), out = new Float32Array(half.length);
    for (let i = 0; i < half.length; i++) out[i] = HALF[half[i]];
    return out;
  }
  const q = new Int8Array(raw.buffer), scales = new Float32Array(storedBytes(tensor.scale, shape[0] * 4, `${name}'s row scales`).buffer);
  const out = new Float32Array(q.length), cols = shape[1];
  for (let r = 0; r < scales.length; r++) {
    for (let c = 0, o = r * cols; c < cols; c++) out[o + c] = q[o + c] * scales[r];
  }
  return out;
}

function sigmoid(x) { return 1 / (1 + Math.exp(-x)); }

// out[offset + i] = source[from + i] - logsumexp(source[from .. from + count]) + shift
function logSoftmaxInto(source, from, count, out, offset, shift) {
  let max = -Infinity;
  for (let i = 0; i < count; i++) if (source[from + i] > max) max = source[from + i];
  let sum = 0;
  for (let i = 0; i < count; i++) sum += Math.exp(source[from + i] - max);
  const norm = max + Math.log(sum);
  for (let i = 0; i < count; i++) out[offset + i] = source[from + i] - norm + shift;
}

// Every matrix the steps multiply, and the vectors they multiply, live in one Float32Array, the
// memory of a small WebAssembly function (wasm.py builds it: out += W x, four lanes at a time).
// Where WebAssembly SIMD is missing, or a width is not a multiple of 8, a plain loop does the same.
const MATVEC_WASM = "__CHARLM_MATVEC_WASM__";

class Heap {
  constructor() { this.size = 0; }
  reserve(count) { const at = this.size; this.size += (count + 7) & ~7; return at; }  // 32-byte aligned
  build() {
    const bytes = this.size * 4;
    const code = Uint8Array.from(atob(MATVEC_WASM), (c) => c.charCodeAt(0));
    this.wasm = null;
    try {
      if (typeof WebAssembly === "object" && WebAssembly.validate(code)) {
        const memory = new WebAssembly.Memory({ initial: Math.ceil(bytes / 65536) + 1 });
        const instance = new WebAssembly.Instance(new WebAssembly.Module(code), { env: { memory } });
        this.wasm = instance.exports.matvec;
        this.f32 = new Float32Array(memory.buffer);
        return;
      }
    } catch (e) { /* no SIMD: the plain loop below */ }
    this.f32 = new Float32Array(this.size);
  }
  // f32[out .. out + rows] += W (rows x cols at w) times the vector at x
  matvec(w, rows, cols, x, out) {
    if (this.wasm && cols % 8 === 0) {
      this.wasm(w * 4, rows, cols, x * 4, out * 4);
      return;
    }
    const f = this.f32;
    for (let r = 0, o = w; r < rows; r++, o += cols) {
      let s = 0;
      for (let c = 0; c < cols; c++) s += f[o + c] * f[x + c];
      f[out + r] += s;
    }
  }
}

// --- the model -----------------------------------------------------------------------------------

class Model {
  // `t`: the tensors readWeights gave, by name.
  constructor(meta, t) {
    const H = meta.hidden, L = meta.layers, G = { lstm: 4, gru: 3, rnn: 1 }[meta.cell] * H;
    Object.assign(this, { meta, H, L, G, cell: meta.cell, V: meta.vocab.chars.length, t });
    this.index = new Map(meta.vocab.chars.map((c, i) => [c, i]));
    this.fused = meta.cell !== "gru";  // LSTM, RNN: input and hidden products sum, so one product per layer
    const heap = (this.heap = new Heap()), placed = [];
    const place = (array) => { const at = heap.reserve(array.length); placed.push([at, array]); return at; };
    this.layers = [];
    for (let l = 0; l < L; l++) {
      const wih = t[`w_ih${l}`], whh = t[`w_hh${l}`], bih = t[`b_ih${l}`], bhh = t[`b_hh${l}`];
      const layer = { xh: heap.reserve(2 * H), bih, bhh };
      if (this.fused) {
        layer.bias = bih.map((b, g) => b + bhh[g]);
        if (l === 0) layer.whh = place(whh);
        else {  // [W_ih | W_hh] over [input | hidden]
          const wcat = new Float32Array(G * 2 * H);
          for (let g = 0; g < G; g++) {
            wcat.set(wih.subarray(g * H, (g + 1) * H), g * 2 * H);
            wcat.set(whh.subarray(g * H, (g + 1) * H), g * 2 * H + H);
          }
          layer.wcat = place(wcat);
        }
      } else {
        if (l > 0) layer.wih = place(wih);
        layer.whh = place(whh);
      }
      this.layers.push(layer);
    }
    this.gates = heap.reserve(G);
    this.hiddenGates = heap.reserve(G);
    this.hidden = heap.reserve(H);
    this.head = meta.head;
    if (meta.head.kind === "full") {
      this.headW = place(t.head_w);
      this.headB = t.head_b;
      this.scores = heap.reserve(this.V);
    } else {
      const cutoffs = meta.head.cutoffs;
      this.headRows = cutoffs[0] + cutoffs.length - 1;
      this.headW = place(t.head_w);
      this.scores = heap.reserve(this.headRows);
      this.tails = cutoffs.slice(0, -1).map((start, i) => ({
        start, stop: cutoffs[i + 1], width: meta.head.tail_widths[i],
        proj: place(t[`tail${i}_proj`]), out: place(t[`tail${i}_out`]),
      }));
      this.projected = heap.reserve(H);
      this.within = heap.reserve(Math.max(...this.tails.map((tail) => tail.stop - tail.start)));
      this.rank = Int32Array.from(meta.head.rank);
      this.ranked = new Float64Array(this.V);
    }
    heap.build();
    for (const [at, array] of placed) heap.f32.set(array, at);
    this.table = new Map();  // id -> layer 0's input product and biases, computed on first use
  }

  zeroState() {
    const state = { h: [], c: [] };
    for (let l = 0; l < this.L; l++) {
      state.h.push(new Float32Array(this.H));
      state.c.push(new Float32Array(this.H));
    }
    return state;
  }

  inputProduct(id) {
    let row = this.table.get(id);
    if (!row) {
      const H = this.H, wih = this.t.w_ih0, embed = this.t.embed, base = this.fused ? this.layers[0].bias : this.layers[0].bih;
      row = new Float32Array(this.G);
      for (let g = 0; g < this.G; g++) {
        let s = base[g];
        for (let c = 0; c < H; c++) s += wih[g * H + c] * embed[id * H + c];
        row[g] = s;
      }
      this.table.set(id, row);
    }
    return row;
  }

  // One character: the state moves on; `out` (if given) gets the log-probabilities of the next
  // character, in id order.
  step(id, state, out) {
    const H = this.H, G = this.G, heap = this.heap, f = heap.f32, gates = this.gates;
    let x = null;
    for (let l = 0; l < this.L; l++) {
      const layer = this.layers[l], h = state.h[l];
      f.set(h, layer.xh + H);
      if (l > 0) f.set(x, layer.xh);
      if (this.fused) {
        if (l === 0) {
          f.set(this.inputProduct(id), gates);
          heap.matvec(layer.whh, G, H, layer.xh + H, gates);
        } else {
          f.set(layer.bias, gates);
          heap.matvec(layer.wcat, G, 2 * H, layer.xh, gates);
        }
        if (this.cell === "lstm") {  // torch's gate order: input, forget, candidate, output
          const c = state.c[l];
          for (let j = 0; j < H; j++) {
            const i = sigmoid(f[gates + j]), fg = sigmoid(f[gates + H + j]);
            const g = Math.tanh(f[gates + 2 * H + j]), o = sigmoid(f[gates + 3 * H + j]);
            c[j] = fg * c[j] + i * g;
            h[j] = o * Math.tanh(c[j]);
          }
        } else {
          for (let j = 0; j < H; j++) h[j] = Math.tanh(f[gates + j]);
        }
      } else {  // GRU (reset, update, candidate): the candidate needs the hidden product apart
        const hg = this.hiddenGates;
        if (l === 0) f.set(this.inputProduct(id), gates);
        else {
          f.set(layer.bih, gates);
          heap.matvec(layer.wih, G, H, layer.xh, gates);
        }
        f.set(layer.bhh, hg);
        heap.matvec(layer.whh, G, H, layer.xh + H, hg);
        for (let j = 0; j < H; j++) {
          const r = sigmoid(f[gates + j] + f[hg + j]), z = sigmoid(f[gates + H + j] + f[hg + H + j]);
          const n = Math.tanh(f[gates + 2 * H + j] + r * f[hg + 2 * H + j]);
          h[j] = (1 - z) * n + z * h[j];
        }
      }
      x = h;
    }
    if (out) {
      f.set(x, this.hidden);
      this.logprobs(out);
    }
  }

  logprobs(out) {
    const heap = this.heap, f = heap.f32, V = this.V, H = this.H;
    if (this.head.kind === "full") {
      f.set(this.headB, this.scores);
      heap.matvec(this.headW, V, H, this.hidden, this.scores);
      logSoftmaxInto(f, this.scores, V, out, 0, 0);
      return;
    }
    // nn.AdaptiveLogSoftmaxWithLoss.log_prob: the shortlist and one token per cluster share a
    // softmax; a cluster's characters get its token's log-probability plus their own within it.
    const ranked = this.ranked, shortlist = this.head.cutoffs[0];
    f.fill(0, this.scores, this.scores + this.headRows);
    heap.matvec(this.headW, this.headRows, H, this.hidden, this.scores);
    logSoftmaxInto(f, this.scores, this.headRows, ranked, 0, 0);
    const clusters = ranked.slice(shortlist, this.headRows);
    this.tails.forEach((tail, i) => {
      const size = tail.stop - tail.start;
      f.fill(0, this.projected, this.projected + tail.width);
      heap.matvec(tail.proj, tail.width, H, this.hidden, this.projected);
      f.fill(0, this.within, this.within + size);
      heap.matvec(tail.out, size, tail.width, this.projected, this.within);
      logSoftmaxInto(f, this.within, size, ranked, tail.start, clusters[i]);
    });
    for (let j = 0; j < V; j++) out[j] = ranked[this.rank[j]];
  }

  // Text -> ids, as Vocab.encode: normalized (page.js's `normalized`), unknown characters mapped to the unknown
  // symbol (`unknownRead` says so) or refused.
  encode(text) {
    text = this.read(text);
    const unknown = this.meta.vocab.unknown_id, missing = this.missing(text);
    if (missing.length && unknown === null) throw new Error(neverSeen("seed", missing, this.meta.vocab.unseen));
    return Array.from(text, (ch) => this.index.get(ch) ?? unknown);
  }

  read(text) { return normalized(lineBreaks(text), this.meta.vocab.normalize); }

  // Vocab.outside: the characters of `text` (as read) the model does not know, each once, the first found first.
  missing(text) { return [...new Set(text)].filter((ch) => !this.index.has(ch)); }

  // What Vocab.encode warns of a seed whose characters the model does not know it reads as its unknown symbol
  // (`charlm sample`'s "warning: seed: 'Q' not in the vocabulary, read as '\ufffd'"), each named as charlm names
  // it; "" for none, and for a model without the symbol, which refuses them (`encode`).
  unknownRead(seed) {
    const { unknown_id: unknown, chars, unseen } = this.meta.vocab, missing = this.missing(this.read(seed));
    if (unknown === null || !missing.length) return "";
    const named = firstNamed(missing, (c) => nameUnseen(c, unseen));
    return `seed: ${named} not in the vocabulary, read as ${pythonRepr(chars[unknown])}`;
  }
}

// --- decoding ------------------------------------------------------------------------------------

// A text's line breaks as charlm reads every text (corpus.line_breaks): `\r\n` (a Windows file's), and
// `\r\r\n`, as `\n`; a lone `\r` stays, a character the model knows or not. So a seed reads as charlm reads it.
function lineBreaks(text) { return text.replace(/\r+\n/g, "\n"); }

// torch's CPU generator, so that a seeded text is the one `charlm sample --random-seed` writes: the engine
// draws a row's uniforms from torch.Generator().manual_seed(seed), which is MT19937 seeded with the seed's
// low 32 bits, and torch.rand(..., dtype=torch.float64) makes each of two 32-bit outputs: the low 53 bits
// of (first << 32 | second), times 2^-53. Returns the next such uniform on each call.
function torchUniforms(seed) {
  const state = new Uint32Array(624);  // a Uint32Array keeps every sum and product below to 32 bits
  state[0] = seed >>> 0;  // the low 32 bits, a negative seed's in two's complement, as torch's
  for (let i = 1; i < 624; i++) state[i] = Math.imul(1812433253, state[i - 1] ^ (state[i - 1] >>> 30)) + i;
  let next = 624;
  const word = () => {
    if (next === 624) {  // the state twisted once all 624 words are used
      for (let k = 0; k < 624; k++) {
        const y = (state[k] & 0x80000000) | (state[(k + 1) % 624] & 0x7fffffff);
        state[k] = state[(k + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      next = 0;
    }
    let y = state[next++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    return (y ^ (y >>> 18)) >>> 0;
  };
  return () => {
    const high = word() & 0x1fffff, low = word();
    return (high * 2 ** 32 + low) * 2 ** -53;
  };
}

function argmax(values, count, allowed) {
  let best = -1;
  for (let i = 0; i < count; i++) if ((!allowed || allowed[i]) && (best < 0 || values[i] > values[best])) best = i;
  return best;
}

const BELOW_ONE = 1 - 2 ** -24;  // decoding.BELOW_ONE: the largest float32 below 1
const LARGEST = 3.4028234663852886e38;  // float32's largest: decoding.LARGEST

// decoding.RowSampler.drawn, in its float32 arithmetic wherever it decides the id (Math.fround: a float32):
// the template's allowed characters (the others get probability 0), temperature, then top-k (the k likeliest,
// ties at the k-th kept), then top-p (`nucleus`), then the CDF inverted at a uniform (`inverseCdf`). The
// log-probabilities differ from torch's in their last bits, so a uniform within that of a boundary of the CDF
// may still draw a neighbour. `allowed` (one byte per id) is null for free text with nothing banned.
// Whether a text takes the likeliest character each step, drawing nothing: greedy, or a temperature of 0 in
// float32 (as charlm's).
function isGreedy(options) { return options.greedy || Math.fround(options.temperature) === 0; }

function choose(logprobs, count, options, uniform, probs, allowed = null) {
  if (isGreedy(options)) return argmax(logprobs, count, allowed);
  const temperature = Math.min(Math.fround(options.temperature), LARGEST);
  let max = -Infinity;
  for (let i = 0; i < count; i++) if ((!allowed || allowed[i]) && logprobs[i] > max) max = logprobs[i];
  for (let i = 0; i < count; i++) {  // scaled from the largest down
    probs[i] = !allowed || allowed[i] ? Math.fround(Math.fround(logprobs[i] - max) / temperature) : -Infinity;
  }
  if (options.top_k && options.top_k < count) {
    const kth = Float64Array.from(probs.subarray(0, count)).sort()[count - options.top_k];
    for (let i = 0; i < count; i++) if (probs[i] < kth) probs[i] = -Infinity;
  }
  let total = 0;
  for (let i = 0; i < count; i++) total += (probs[i] = Math.exp(probs[i]));
  for (let i = 0; i < count; i++) probs[i] = Math.fround(probs[i] / total);
  if (options.top_p < 1) nucleus(probs, count, Math.fround(options.top_p));
  return inverseCdf(probs, count, Math.min(Math.fround(uniform()), BELOW_ONE));  // decoding.as_uniforms
}

// decoding.nucleus: the likeliest first, each dropped where the probability of those before it reaches top_p.
// Sums in doubles, each rounded to float32: torch's CPU cumsum of float32. Ties go in id order, and torch's
// sort of a row longer than 16 puts them in no set order, which changes the ids kept only where the cut falls
// inside a tie: never for ties at 0 (banned, outside the form or the top k, underflowed), which add nothing to
// the CDF kept or not; for tied positive probabilities, equal logits (a temperature of 1e8 or more flattens a
// row into one tie), or distinct ones rounded to one float32, rarer than the last-bit differences `choose` has.
function nucleus(probs, count, topP) {
  const order = Array.from({ length: count }, (_, i) => i).sort((a, b) => probs[b] - probs[a]);
  let sum = 0;
  for (const i of order) {
    const p = probs[i];
    sum += p;
    if (Math.fround(Math.fround(sum) - p) >= topP) probs[i] = 0;
  }
}

// decoding.inverse_cdf: the first id whose cumulative probability (float32, summed as `nucleus` sums) is
// above uniform * total (searchsorted, right=True), at most the last.
function inverseCdf(probs, count, uniform) {
  let sum = 0;
  for (let i = 0; i < count; i++) sum += probs[i];
  const target = Math.fround(uniform * Math.fround(sum));
  sum = 0;
  for (let i = 0; i < count; i++) {
    sum += probs[i];
    if (Math.fround(sum) > target) return i;
  }
  return count - 1;
}

// --- poem forms and templates ---------------------------------------------------------------------
// charlm/forms.py is the reference: the same escapes, acrostic rule, script rule and one-line errors
// (named as the server names its fields). Which characters are Han, letters or CJK punctuation is
// not decided here: the export put charlm.forms' verdict for each id in meta.forms.classes, and for
// each character the model reads as an id of another class in meta.forms.typed_classes.

const FREE = -1;  // a slot where `_` was: any character of the template's script
const ESCAPES = { n: "\n", t: "\t", _: "_", "\\": "\\" };  // `\_`: a literal underscore, a fixed slot

// A refused option's error, naming it (`param`) as the page's FIELDS and the server name their fields.
function optionError(param, message) { return Object.assign(new Error(message), { param }); }

// unseen.never_seen: characters a model cannot take (a seed's, a template's, an acrostic's), in one wording,
// each named and counted as charlm does (page.js, which the worker runs first: nameUnseen, from the model's
// `hints`, and counted).
function neverSeen(what, chars, hints) {
  const named = firstNamed(chars, (c) => nameUnseen(c, hints));
  return `${what}: ${counted(chars.length, "character")} the model has never seen: ${named}; use only characters from the training text`;
}

// forms.py's class of a character the model does not know (html.class_of gave the known ones' ids theirs):
// "h" Han (a CJK ideograph), "p" CJK or full-width punctuation, "l" a letter, "." anything else.
function unicodeClass(c) {
  const code = c.codePointAt(0);
  if (/^\p{Lo}$/u.test(c) && /^\p{Script=Han}$/u.test(c)) return "h";
  if ((code >= 0x3000 && code <= 0x303f) || (code >= 0xff00 && code <= 0xffef && !/^[\p{L}\p{N}]$/u.test(c))) return "p";
  return /^\p{L}$/u.test(c) ? "l" : ".";
}

// forms.template_slots: null for each `_`, else the character fixed there, after the escapes; read in one pass,
// so that no character of the template (a NUL) is taken for a mark the parse left.
function templateSlots(text) {
  const given = [...text], slots = [];
  for (let i = 0; i < given.length; i++) {
    if (given[i] === "\\" && Object.hasOwn(ESCAPES, given[i + 1] ?? "")) slots.push(ESCAPES[given[++i]]);
    else slots.push(given[i] === "_" ? null : given[i]);
  }
  return slots;
}

// forms.template_of then constraints.Constrained: the id fixed at each position (FREE where `_` is) and
// which ids `_` allows, without the ids `banned` bans (a mask, or null); null for free text.
function compileTemplate(request, banned) {
  const { form, template, acrostic } = request, { templates, names, choices, classes, typed_classes } = model.meta.forms;
  if (form != null && template != null) throw optionError("form", "give form or template, not both");
  let text, name;
  if (form != null) {  // by any name charlm.forms gives it (FORM_NAMES: 五绝, 五言絕句 ...)
    if (!Object.hasOwn(names, form)) {
      throw optionError("form", `form '${form}' is not a form charlm knows; choose one of ${choices}`);
    }
    [text, name] = [templates[names[form]], `form ${form}`];
  } else if (template != null) [text, name] = [template, "template"];
  else if (acrostic != null) {
    throw optionError("acrostic", "acrostic fixes the first character of each verse of a form: give form or template too");
  } else return null;
  const param = form != null ? "form" : "template";
  const chars = templateSlots(text);
  if (!chars.includes(null)) {
    throw optionError(param, `${name} has no \`_\` for the model to fill; write \`_\` for each character it writes`);
  }
  const fromAcrostic = new Set();
  let starts = [];  // the positions the acrostic fixes
  if (acrostic != null) {  // the first `_` of each run of `_` (each verse)
    starts = chars.flatMap((c, i) => (c === null && (i === 0 || chars[i - 1] !== null) ? [i] : []));
    const given = [...acrostic];
    if (given.length !== starts.length) {
      throw optionError("acrostic", `acrostic has ${counted(given.length, "character")} but ${name} has ${counted(starts.length, "verse")}; give one per verse`);
    }
    starts.forEach((at, k) => { chars[at] = given[k]; fromAcrostic.add(given[k]); });
  }
  // Fixed text as the model reads it (normalized, as Vocab.encode does); the model must know it.
  const normalize = model.meta.vocab.normalize, unknown = model.meta.vocab.unknown_id;
  const unknownOf = new Map();  // each option's characters the model does not know, named as charlm names them
  const slots = chars.map((c) => {
    if (c === null) return FREE;
    const read = normalized(c, normalize);
    const known = [...read].length === 1 ? read : c;
    const id = model.index.get(known);
    if (id === undefined || id === unknown) {  // ',' (did you mean '，'?)
      const what = fromAcrostic.has(c) ? "acrostic" : name;
      if (!unknownOf.has(what)) unknownOf.set(what, new Set());
      unknownOf.get(what).add(known);
    }
    return id;
  });
  // forms.SCRIPT_RULE: Han if the fixed text has Han or CJK punctuation, letters if it has letters,
  // else whichever the vocabulary holds more of (a tie: Han). The fixed text as typed: its id's class,
  // unless the model reads it as a character of another class (nfkc's "，" as ",": typed_classes).
  const classOf = (c, id) => typed_classes[c] ?? (id === undefined ? unicodeClass(c) : classes[id]);
  const fixed = chars.flatMap((c, i) => (c === null ? [] : [classOf(c, slots[i])]));
  const given = fixed.some((c) => c === "h" || c === "p") ? "h" : fixed.includes("l") ? "l" : null;
  if (given && acrostic != null) {  // each verse begins with a character of the verses' script, before the model's refusals
    const kind = given === "h" ? "Han character" : "letter";
    starts.forEach((at, k) => {
      if (classOf(chars[at], slots[at]) !== given) {
        throw optionError("acrostic", `acrostic ${acrostic}: verse ${k + 1} would begin with ${pythonRepr(chars[at])}, which is not a ${kind}, as the verses of ${name} are; give one ${kind} per verse`);
      }
    });
  }
  if (unknownOf.size) {  // every character of the option that fixed the first, as a seed's are named
    const [what, unknownChars] = unknownOf.entries().next().value;
    throw optionError(what === "acrostic" ? "acrostic" : param, neverSeen(what, [...unknownChars], model.meta.vocab.unseen));
  }
  const ban = slots.findIndex((id) => id !== FREE && banned && banned[id]);
  if (ban >= 0) {  // a fixed character banned: the template cannot be written
    const what = fromAcrostic.has(chars[ban]) ? "acrostic" : name;
    throw optionError("ban", `ban bans ${pythonRepr(model.meta.vocab.chars[slots[ban]])}, but ${what} must write it; leave it unbanned`);
  }
  const count = (c) => classes.split(c).length - 1;
  const script = given ?? (count("h") >= count("l") ? "h" : "l");
  const free = Uint8Array.from(classes, (c, id) => c === script && !(banned && banned[id]));
  if (!free.includes(1)) {
    const needs = script === "h" ? "Han characters" : "letters";
    if (banned) throw optionError("ban", `ban bans every way to write ${name} (\`_\` needs ${needs}); ban fewer`);
    throw optionError(param, `${name}: the model cannot write this template (it knows no ${needs} for \`_\`)`);
  }
  const only = new Map();  // id -> the mask allowing that id alone
  const allowed = (position) => {
    const id = slots[position];
    if (id === FREE) return free;
    if (!only.has(id)) {
      const mask = new Uint8Array(model.V);
      mask[id] = 1;
      only.set(id, mask);
    }
    return only.get(id);
  };
  return { size: slots.length, allowed, ...seedRules(slots, starts, script, acrostic, form != null ? name : null) };
}

// constraints.Constrained's seed rules, over the template's ids (the seed as the model reads it; lengths in
// characters, code points, as Python counts them):
// begun: where the poem the seed began leaves off in the template, 0 for a new poem after the seed. The seed's
// poem is its text after its last line that is not a whole line of the template, less the whole poems at its
// start, each ended by a line break; it is begun if it is shorter than the template and its start. A verse it
// began against the acrostic is refused; under a form (`form`: its name, null for a template), so is a last
// line that begins no poem of it (refuse_unbegun): a new poem would be glued to it.
// marked: the seed with its poem's marks, and the whole verse lines' before it, written as the template writes
// them: a ',' where the form has '，' (same_mark: meta.forms.marks, Python's pairs) is read as '，'.
function seedRules(slots, acrosticAt, script, acrostic, form) {
  const { classes } = model.meta.forms, chars = model.meta.vocab.chars, unknown = model.meta.vocab.unknown_id;
  const newline = model.index.get("\n"), marks = new Map(Object.entries(model.meta.forms.marks));
  const shape = slots.map((id, i) => (acrosticAt.includes(i) ? FREE : id)), size = shape.length;
  const sameMark = (c, id) => model.index.get(c) === id || (marks.get(c) ?? "").includes(chars[id]);
  const fitsShape = (text, at = 0) => text.length <= size - at && text.every((c, k) => {
    const id = model.index.get(c), want = shape[at + k];
    return want === FREE ? id !== undefined && id !== unknown && classes[id] === script : sameMark(c, want);
  });
  const verseLines = [], seen = new Set();  // each different line of the template, not empty: [start, length]
  for (let i = 0, from = 0; i <= size; i++) {
    if (i < size && shape[i] !== newline) continue;
    const key = shape.slice(from, i).join();
    if (i > from && !seen.has(key)) verseLines.push([from, i - from]);
    seen.add(key);
    from = i + 1;
  }
  const verseLineOf = (line) => verseLines.find(([at, length]) => line.length === length && fitsShape(line, at));
  const linesOf = (text) => text.join("").split("\n").map((line) => [...line]);
  const poemStart = (text) => {  // where poemOf looks for the poem: after the last line that is not a verse line
    const lines = linesOf(text);
    let start = text.length - lines[lines.length - 1].length;
    for (let k = lines.length - 2; k >= 0 && verseLineOf(lines[k]); k--) start -= lines[k].length + 1;
    const endsInBreak = shape[size - 1] === newline;  // then poems follow one another with no break between
    while (text.length - start > size && fitsShape(text.slice(start, start + size))) {
      if (!endsInBreak && text[start + size] !== "\n") break;
      start += size + (endsInBreak ? 0 : 1);  // a whole poem and its line break: the seed's own
    }
    return start;
  };
  const poemOf = (text) => {
    const poem = text.slice(poemStart(text));
    return poem.length > 0 && poem.length < size && fitsShape(poem) ? poem : null;
  };
  const writtenAs = (out, from, at, count) => {  // out[from ..] in the template's fixed characters from `at` on
    for (let k = 0; k < count; k++) if (shape[at + k] !== FREE) out[from + k] = chars[shape[at + k]];
  };
  const marked = (seed) => {
    const text = [...seed], lines = linesOf(text), last = lines[lines.length - 1], out = text.slice();
    let end = text.length - last.length - 1;  // where the line walked over ends (its line break)
    for (let k = lines.length - 2; k >= 0; k--) {
      const line = lines[k], verse = verseLineOf(line);
      if (!verse) break;
      writtenAs(out, end - line.length, verse[0], line.length);
      end -= line.length + 1;
    }
    const poem = poemOf(text);
    if (poem && last.length) writtenAs(out, text.length - last.length, poem.length - last.length, last.length);
    return out.join("");
  };
  const refuseUnbegun = (text) => {
    const last = text.slice(text.lastIndexOf("\n") + 1);
    if (!last.length) return;
    const poem = text.slice(poemStart(text)), wrong = poem.slice(0, size).findIndex((c, k) => !fitsShape([c], k));
    const newPoem = "end the seed with a line break for a new poem under it";
    let problem = `completes a whole ${form}; ${newPoem}, or leave the finished poem out`;  // a finished poem: nothing to write there
    if (wrong >= 0) {
      const want = shape[wrong], wanted = want !== FREE ? pythonRepr(chars[want]) : script === "h" ? "a Han character" : "a letter";
      problem = `has ${pythonRepr(poem[wrong])} where ${form} writes ${wanted}; write the form there, or ${newPoem}`;
    }
    throw new Error(`seed: its last line ${pythonRepr(last.join(""))} ${problem}`);
  };
  const begun = (seed) => {
    const text = [...seed], poem = poemOf(text);
    if (!poem) {
      if (form) refuseUnbegun(text);  // a template's text may go on a line of prose
      return 0;
    }
    acrosticAt.forEach((at, k) => {
      if (at < poem.length && model.index.get(poem[at]) !== slots[at]) {
        const [got, want] = [poem[at], chars[slots[at]]].map(pythonRepr);  // constraints.py's !r
        throw optionError("acrostic", `acrostic ${acrostic}: the seed's poem begins verse ${k + 1} with ${got}, not ${want}; an acrostic is the whole poem's: begin the seed's verses with it, or end it before them for a new poem`);
      }
    });
    return poem.length;
  };
  return { begun, marked };
}

// The ids a request bans as a mask (1: banned), null when it bans none.
function bannedMask(ids) {
  if (!ids || !ids.length) return null;
  const mask = new Uint8Array(model.V);
  for (const id of ids) mask[id] = 1;
  return mask;
}

function logprobsOf(text) {
  const ids = model.encode(text), out = [], scores = new Float64Array(model.V), state = model.zeroState();
  for (let i = 0; i + 1 < ids.length; i++) {
    model.step(ids[i], state, scores);
    out.push(scores[ids[i + 1]]);
  }
  return out;
}

// --- a request's options -------------------------------------------------------------------------
// What generate takes, each checked as charlm's SampleConfig checks it (temperature 0 is greedy, as on the
// page's slider), and what charlm offers that the page does not, refused by name: taken without a word, a
// repetition, presence or frequency penalty, a logit bias or a temperature schedule (a list) wrote a text charlm
// would not write.

const OPTIONS = ["seed", "length", "temperature", "top_k", "top_p", "greedy", "random_seed", "stop", "form", "template", "acrostic", "ban"];
const MESSAGE_FIELDS = ["type", "id", "continuing"];  // the page's own, beside the options
const NOT_OFFERED = {
  repetition_penalty: "the page has no repetition penalty",
  repetition_window: "the page has no repetition penalty",
  presence_penalty: "the page has no presence or frequency penalty",
  frequency_penalty: "the page has no presence or frequency penalty",
  logit_bias: "the page's one bias is ban, the characters never to write",
  num_samples: "call generate once per sample",
  precision: "the page computes in fp32",
};

function checkOptions(request) {
  for (const name of Object.keys(request)) {
    if (OPTIONS.includes(name) || MESSAGE_FIELDS.includes(name) || request[name] == null) continue;  // null: not given
    if (Object.hasOwn(NOT_OFFERED, name)) {
      throw optionError(name, `${name} is charlm's, not the page's (${NOT_OFFERED[name]}); leave it out, or sample with charlm`);
    }
    throw optionError(name, `unknown sampling option ${name}; known: ${OPTIONS.join(", ")}`);
  }
  const given = (name) => request[name] != null;
  const isInteger = (name) => Number.isInteger(request[name]);
  const { temperature, top_p } = request;
  if (Array.isArray(temperature)) {
    throw optionError("temperature", `temperature must be one number: the page has no temperature schedule (a list), not ${shown(temperature)}`);
  }
  if (given("temperature") && !(typeof temperature === "number" && temperature >= 0 && temperature < Infinity)) {
    throw optionError("temperature", `temperature must be a finite number of 0 or more (0: greedy), not ${shown(temperature)}`);
  }
  if (given("top_p") && !(typeof top_p === "number" && top_p > 0 && top_p <= 1)) {
    throw optionError("top_p", `top_p must be in (0, 1], not ${shown(top_p)}`);
  }
  if (given("top_k") && !(isInteger("top_k") && request.top_k >= 1)) {
    throw optionError("top_k", `top_k must be an integer of at least 1, not ${shown(request.top_k)}`);
  }
  if (given("length") && !(isInteger("length") && request.length >= 0)) {
    throw optionError("length", `length must be an integer of 0 or more, not ${shown(request.length)}`);
  }
  if (given("random_seed") && !Number.isSafeInteger(request.random_seed)) {  // 2 ** 63 - 1 arrives as 2 ** 63: another seed
    throw optionError("random_seed", `random_seed must be an integer from -(2^53 - 1) to 2^53 - 1 (JavaScript's exact integers), not ${shown(request.random_seed)}`);
  }
  if (given("greedy") && typeof request.greedy !== "boolean") {
    throw optionError("greedy", `greedy must be true or false, not ${shown(request.greedy)}`);
  }
  const ignored = ["temperature", "top_k", "top_p"].filter(given);  // as config.check_greedy_alone: the page's controls send no greedy
  if (request.greedy === true && ignored.length) {
    const one = ignored.length === 1;
    throw optionError("greedy", `greedy: true takes the likeliest character, so ${ignored.join(" and ")} change${one ? "s" : ""} nothing: drop ${one ? "it" : "them"}, or drop greedy: true to sample`);
  }
  for (const name of ["seed", "stop"]) {
    if (given(name) && typeof request[name] !== "string") throw optionError(name, `${name} must be a string, not ${shown(request[name])}`);
  }
}

// A generation in slices, so a stop message gets in between them; it streams what it makes.
function generate(request) {
  checkOptions(request);
  const options = {
    length: request.length ?? 500, temperature: request.temperature ?? 0.8, top_p: request.top_p ?? 1, top_k: request.top_k ?? 0,
    greedy: !!request.greedy, stop: request.stop || "",
  };
  const normalize = model.meta.vocab.normalize;
  options.stop = normalized(lineBreaks(options.stop), normalize);  // as the model writes it (generation.stop_texts)
  const typed = lineBreaks(request.seed ?? "");
  const banned = bannedMask(request.ban);
  const form = compileTemplate(request, banned);  // null: free text; a new template on each request (Continue too)
  const unbanned = banned && banned.map((out) => 1 - out);  // free text: every id but the banned (null: every id)
  // As the text is shown and read (encoded, and begun), as charlm reads it (sampler.seed_read): normalized ('the'
  // for an nfkc model's 'ｔhe', as charlm.generate gives it and `charlm sample` prints it), and with a form its
  // poem in the form's marks ('，' for a typed ',').
  const read = normalized(typed, normalize), seed = form ? form.marked(read) : read;
  const warning = model.unknownRead(seed);  // a Continue's too, which reads the same seed, as charlm would
  const started = performance.now();
  let state, scores;
  if (request.continuing && last && last.text === seed) {
    state = last.state;
    scores = last.scores;
  } else {
    state = model.zeroState();
    scores = new Float64Array(model.V);
    const start = seed ? model.encode(seed) : [model.meta.vocab.start_id];  // as sampler.stream_samples
    for (let i = 0; i < start.length; i++) model.step(start[i], state, i === start.length - 1 ? scores : null);
  }
  // The poem the seed began, if it began one: its rest is written. After the seed is read, as charlm refuses
  // an unseen character before a seed that breaks the form.
  const begin = form ? form.begun(seed) : 0;
  const allowed = form ? (count) => form.allowed(begin + count) : () => unbanned;
  if (seed !== typed) postMessage({ type: "seed", id: request.id, text: seed });
  // Unseeded, a draw below 2 ** 32 (only a seed's low 32 bits count, as charlm's row_seeds draws), told in `done`
  // so that the text can be written again; greedy draws nothing, and tells no seed (as the server's `seed`).
  const randomSeed = isGreedy(options) ? null : request.random_seed ?? Math.floor(Math.random() * 2 ** 32);
  const uniform = torchUniforms(randomSeed ?? 0);
  const probs = new Float64Array(model.V), chars = model.meta.vocab.chars;
  // The stop is looked for in `ending`, the text's last stop.length units: made.endsWith(stop) after
  // each character would flatten the whole text each time (quadratic in a long sample's length).
  let made = "", ending = "", count = 0, reason = "length";
  stopRequested = false;
  const finish = () => {
    last = { text: seed + made, state, scores };
    const seconds = (performance.now() - started) / 1000;
    postMessage({ type: "done", id: request.id, text: seed + made, reason, warning, seconds, random_seed: randomSeed });
  };
  const slice = () => {
    const until = performance.now() + SLICE_MS;
    let piece = "";
    try {
      while (count < options.length && performance.now() < until) {
        for (let k = 0; k < 8 && count < options.length; k++) {
          const id = choose(scores, model.V, options, uniform, probs, allowed(count));
          piece += chars[id];
          made += chars[id];
          if (options.stop) ending = (ending + chars[id]).slice(-options.stop.length);
          count++;
          model.step(id, state, scores);
          if ((options.stop && ending === options.stop) || (form && begin + count >= form.size)) {
            reason = "stop";  // the stop text, or the template written: the sample's natural end
            count = options.length;
          }
        }
      }
    } catch (e) {  // a slice after the first runs from a timer, where no one would hear of it
      if (piece) postMessage({ type: "chunk", id: request.id, text: piece });
      postMessage({ type: "failed", id: request.id, message: e.message });
      return;
    }
    if (piece) postMessage({ type: "chunk", id: request.id, text: piece });
    if (count >= options.length) finish();
    else if (stopRequested) {
      reason = "stopped";
      finish();
    } else next(slice);
  };
  slice();
}

// The next slice after a timer, so the worker's event loop goes idle in between and takes in queued
// messages (Stop). A MessageChannel continuation is faster but Chromium may run it ahead of them, for
// good; a timer costs at most a few milliseconds per slice.
function next(run) { setTimeout(run, 0); }

onmessage = (event) => {
  const message = event.data;
  try {
    if (message.type === "load") {
      const started = performance.now();
      let tensors;
      try {
        tensors = readWeights(message.meta, message.tensors);
      } catch (e) {  // the page's own weights or description: said as the page's damage, not a request's error
        postMessage({ type: "damaged", message: e.message });
        return;
      }
      try {
        model = new Model(message.meta, tensors);
      } catch (e) {  // the sampler's own failure (a bug, no memory): no damage, which exporting again would not mend
        postMessage({ type: "failed", message: e.message });
        return;
      }
      postMessage({ type: "ready", seconds: (performance.now() - started) / 1000 });
    } else if (message.type === "stop") {
      stopRequested = true;
    } else if (message.type === "logprobs") {
      postMessage({ type: "result", id: message.id, value: logprobsOf(message.text) });
    } else if (message.type === "generate") {
      generate(message);
    }
  } catch (e) {
    postMessage({ type: "error", id: message.id, message: e.message, param: e.param });
  }
};
