"""The per-character step of sampling: the model run forward one character at a time, state kept.

Each new character costs one step of the recurrent core, never a re-run of the text so far. For an
LSTM that step is `FusedLSTMStep`: the equations of `cells.lstm_cell` (input, forget, output gates,
candidate, cell state), rearranged for speed: a table lookup for layer 0's input, then one matrix
product per layer, into preallocated buffers. (Calling `nn.LSTM` once per character pays its whole
dispatch, about 2 ms on a CPU, for a few microseconds of work.) tests/test_cells.py checks its logits
and states against `cells.lstm_cell` stepped one character at a time. A GRU or plain RNN steps
through the model itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import CharLM, FullHead, State, map_state

PRIME_CHUNK = 2048  # a long seed is primed in chunks of this many characters, one forward pass each
ROW_BLOCK = 8  # rows through torch's own kernels (an adaptive head, a GRU or RNN step) go this many at a time


class RowStepper:
    """The model stepped for a changing set of rows: the samples of `charlm sample`, or the requests of
    a server's continuous batching (`generation.Batch` drives it for both).

    A row joins with a state primed on its own text (`prime`, then `load`) and leaves at any step
    boundary; the caller keeps live rows packed at the front (`move` the last row into a freed one).
    Each row's next-character logits live here with its state: `logits[:rows]`. With `pad` a step
    computes `padded_rows(rows)` rows (a GRU or RNN: blocks of ROW_BLOCK), so a row's numbers never
    depend on how many others there are: not on the server's rows that come and go, nor on the samples
    drawn beside it. Without it (one sample alone) just its row: padded to 4, a lone 2x512 step took
    1.3 times as long, a 2x1024 one 1.8 times, for last bits that tip a draw only rarely."""

    def __init__(self, model: CharLM, capacity: int, dtype: torch.dtype = torch.float32, pad: bool = True):
        self.model, self.capacity = model, capacity
        if not pad:
            self.padded = lambda rows: rows
        elif model.config.cell == "lstm":
            self.padded = padded_rows
        else:
            # A GRU or RNN steps through the model, whose kernels give a row other bits from 9 rows up (at
            # 256 cells): it goes in blocks of ROW_BLOCK rows, one shape whatever the number of rows.
            self.padded = lambda rows: max(1, -(-rows // ROW_BLOCK)) * ROW_BLOCK
        size = self.padded(capacity)
        self.ids = torch.zeros(size, dtype=torch.long, device=model.device)
        self.device = self.ids.device  # read once: a tensor's device is a torch call
        self.fused = FusedLSTMStep(model, size, dtype) if model.config.cell == "lstm" else None
        if self.fused is not None:
            self.logits = self.fused.logits
        else:
            self.logits = torch.zeros(size, model.config.vocab_size, device=model.device)
            shape = (model.config.layers, size, model.config.hidden)
            self.state: State = torch.zeros(shape, device=model.device)
        self.row_views: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # per number of live rows: `views`

    def views(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ids a step of `rows` live rows computes (padded) and their logits (`logits[:rows]`), sliced
        once per number of rows: a slice is a torch call, and a lone stream's step is mostly calls."""
        views = self.row_views.get(rows)
        if views is None:
            views = self.row_views[rows] = (self.ids[: self.padded(rows)], self.logits[:rows])
        return views

    @torch.inference_mode()
    def prime(self, ids: torch.Tensor) -> tuple[torch.Tensor, State]:
        """Reads a text (1-D ids) alone: the logits after its last character (vocab,) and the state."""
        state = None
        for chunk in ids.to(self.model.device).unsqueeze(0).split(PRIME_CHUNK, dim=1):
            logits, state = self.model(chunk, state)
        return logits[0, -1], state

    def load(self, row: int, logits: torch.Tensor, state: State) -> None:
        """Row `row` takes a primed state (batch 1) and its next-character logits."""
        self.logits[row] = logits
        if self.fused is None:
            self.state[:, row] = state[:, 0]
        else:
            self.fused.load_row(row, state)

    @torch.inference_mode()
    def read(self, rows: int, ids: torch.Tensor) -> None:
        """Rows 0..rows-1 each read the text `ids` (1-D) on from their own state (a conversation's
        next turn); their logits are then those after its last token."""
        state = self.state[:, :rows].contiguous() if self.fused is None else self.fused.state(rows)
        for chunk in ids.to(self.model.device).unsqueeze(0).expand(rows, -1).split(PRIME_CHUNK, dim=1):
            logits, state = self.model(chunk, state)
        for row in range(rows):
            self.load(row, logits[row, -1], map_state(lambda s, row=row: s[:, row : row + 1], state))

    def move(self, src: int, dst: int) -> None:
        """Row `dst` takes row `src`'s state and logits: the caller keeps live rows packed at the front."""
        self.logits[dst] = self.logits[src]
        if self.fused is None:
            self.state[:, dst] = self.state[:, src]
        else:
            self.fused.move(src, dst)

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """Advances rows 0..len(ids)-1 by one id each; returns their next logits (a view of `logits`)."""
        if torch.is_inference_mode_enabled():  # as a sampling step is: entering it again is Python work for nothing
            return self.step_rows(ids)
        with torch.inference_mode():
            return self.step_rows(ids)

    def step_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """`step`, in inference mode; rows needing no padding step on `ids` as they are, copied nowhere,
        where they are on the model's device (a caller's CPU ids for a GPU model are copied there)."""
        rows = ids.size(0)
        step_ids, live_logits = self.views(rows)
        as_given = self.padded(rows) == rows and ids.device == self.device and ids.dtype == torch.long
        if as_given:
            step_ids = ids
        else:
            step_ids[:rows] = ids
        if self.fused is not None:
            self.fused(step_ids)
        else:
            for start in range(0, step_ids.size(0), ROW_BLOCK):
                block = slice(start, start + ROW_BLOCK)
                logits, state = self.model(step_ids[block].unsqueeze(1), self.state[:, block].contiguous())
                self.state[:, block] = state
                self.logits[block] = logits[:, -1]
        return live_logits


def padded_rows(rows: int) -> int:
    """How many rows a `RowStepper` step computes for `rows` live ones: a multiple of 4, at least 4.

    A CPU matrix product (MKL) picks its kernel by the number of rows, and a row's last bits change
    with it: measured for fp32 products on an AVX-512 CPU, 1 to 3 rows give other bits than 4 or
    more (one thread), and with two threads so do 5-7 and 9-11; every multiple of 4 gives the same.
    Padded like this, a row is the same whatever else is running (tests/test_serve.py checks it). The
    price: one row alone computes four (0.22 ms against 0.09 ms of products for a 2x256 model)."""
    return max(4, -(-rows // 4) * 4)


class FusedLSTMStep:
    """One character per call for a stacked LSTM at inference, in preallocated buffers.

    Layer 0's input is always one of the vocabulary's embeddings, so its input product is looked up:
    `table[id] = embedding[id] @ W_ih0^T + biases`, computed once for every id. What remains per step
    is one matrix product per layer: layer 0 over its hidden state, layer l > 0 over
    `xh[l] = [input | hidden]` with `[W_ih | W_hh]` concatenated once. Gate rows are reordered once
    from torch's (input, forget, candidate, output) to (input, forget, output, candidate), so one
    sigmoid covers the three gates; then, as in `cells.lstm_cell`, c' = f * c + i * g, h' = o * tanh(c').

    With `dtype=torch.bfloat16` the products (weights, `xh`) run in bf16 through oneDNN with each weight
    packed once into its blocked layout, which a CPU with bf16 hardware (AMX) does at several times
    the fp32 rate (the head too: for a 4,447-character Chinese vocabulary at 64 samples, 0.3 ms against
    1.7 ms); the nonlinear part and the cell state stay fp32. In bf16 a sample's last bits can depend
    on the batch around it, so fp32 is the default.
    """

    @torch.no_grad()
    def __init__(self, model: CharLM, batch: int, dtype: torch.dtype = torch.float32):
        core, hidden = model.core, model.config.hidden  # hidden: the size of each layer's h and c
        self.layers = core.num_layers
        # torch stacks the gates' rows as (i, f, g, o); taken as (i, f, o, g), the three sigmoids are side by side
        i, f, g, o = torch.arange(4 * hidden).chunk(4)
        gate_rows = torch.cat([i, f, o, g])

        def weight(name: str, layer: int) -> torch.Tensor:
            return getattr(core, f"{name}_l{layer}")[gate_rows]

        biases = [weight("bias_ih", n) + weight("bias_hh", n) for n in range(self.layers)]
        self.table = torch.addmm(biases[0], model.embed.weight, weight("weight_ih", 0).t()).to(dtype)
        matrices = [weight("weight_hh", 0)] + [
            torch.cat([weight("weight_ih", n), weight("weight_hh", n)], 1) for n in range(1, self.layers)
        ]
        self.products = [Product(m, b, dtype, batch) for m, b in zip(matrices, [None, *biases[1:]])]
        self.inputs = [0] + [hidden] * (self.layers - 1)  # columns of xh[l] before its hidden state
        device = self.table.device
        self.table_rows = torch.empty(batch, 4 * hidden, device=device, dtype=dtype)  # layer 0's inputs, looked up
        self.xh = [torch.zeros(batch, size + hidden, device=device, dtype=dtype) for size in self.inputs]
        self.cell = torch.zeros(self.layers, batch, hidden, device=device)
        self.gates = torch.empty(batch, 4 * hidden, device=device)
        self.sigmoids, self.candidate = self.gates[:, : 3 * hidden], self.gates[:, 3 * hidden :]
        self.input_gate, self.forget_gate = self.gates[:, :hidden], self.gates[:, hidden : 2 * hidden]
        self.output_gate = self.gates[:, 2 * hidden : 3 * hidden]
        self.cell_tanh = torch.empty(batch, hidden, device=device)
        if isinstance(model.head, FullHead):
            self.head = Product(model.head.weight, model.head.bias, dtype, batch)
        else:  # an adaptive head: its clusters' log-probabilities, in fp32, in blocks of ROW_BLOCK rows
            self.head = None
            self.adaptive = model.head
            self.head_rows = torch.zeros(-(-batch // ROW_BLOCK) * ROW_BLOCK, hidden, device=device)
        self.logits = torch.empty(batch, model.config.vocab_size, device=device)
        self.row_views: dict[int, StepViews] = {}  # per number of rows stepped: `views_of`

    def load_row(self, row: int, state: State) -> None:
        """Row `row` takes a state of batch 1: h into the hidden columns of each layer's `xh`, c into `cell`."""
        h, c = state
        for n in range(self.layers):
            self.xh[n][row, self.inputs[n] :] = h[n, 0]
        self.cell[:, row] = c[:, 0]

    def state(self, rows: int | None = None) -> State:
        """(h, c) of the first `rows` rows (None: all) in fp32, as the model's forward takes it; a copy."""
        hidden = torch.stack([self.xh[n][:rows, self.inputs[n] :] for n in range(self.layers)]).float()
        return hidden, self.cell[:, :rows].clone()

    def move(self, src: int, dst: int) -> None:
        """Row `dst` takes row `src`'s state."""
        for xh in self.xh:
            xh[dst] = xh[src]
        self.cell[:, dst] = self.cell[:, src]

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (rows,) -> logits (rows, vocab) for the first `rows` samples (all of them, except when a
        `RowStepper` steps fewer); the buffer is reused by the next call."""
        m = ids.size(0)
        views = self.row_views.get(m)
        if views is None:
            views = self.row_views[m] = self.views_of(m)
        for n, (xh, cell, hidden, following) in enumerate(views.layers):
            looked_up = torch.index_select(self.table, 0, ids, out=views.table_rows) if n == 0 else None
            self.products[n](xh, add=looked_up, out=views.gates)  # every gate's pre-activation, (i, f, o, g)
            views.sigmoids.sigmoid_()  # i, f, o
            views.candidate.tanh_()  # g
            cell.mul_(views.forget_gate).addcmul_(views.input_gate, views.candidate)  # c' = f * c + i * g
            torch.mul(torch.tanh(cell, out=views.cell_tanh), views.output_gate, out=hidden)  # h' = o * tanh(c')
            if following is not None:
                following.copy_(hidden)  # the next layer's input
        # `hidden` is now the top layer's h', which the head reads
        if self.head is None:
            # Always blocks of ROW_BLOCK rows: torch's adaptive softmax picks its kernels by the number
            # of rows, and a row's last bits changed with it on some CPUs (from 9 rows up); computed in
            # one shape, a row's logits cannot depend on how many others are live.
            self.head_rows[:m].copy_(hidden)
            for start in range(0, m, ROW_BLOCK):
                block = self.adaptive.logits(self.head_rows[start : start + ROW_BLOCK])
                end = min(start + ROW_BLOCK, m)
                self.logits[start:end].copy_(block[: end - start])
            return views.logits
        return self.head(hidden, out=views.logits)

    def views_of(self, m: int) -> StepViews:
        """The buffers' first `m` rows, sliced once per number of rows rather than on every step."""
        layers = []
        for n in range(self.layers):
            following = self.xh[n + 1][:m, : self.inputs[n + 1]] if n + 1 < self.layers else None
            layers.append((self.xh[n][:m], self.cell[n, :m], self.xh[n][:m, self.inputs[n] :], following))
        return StepViews(
            gates=self.gates[:m],
            sigmoids=self.sigmoids[:m],
            candidate=self.candidate[:m],
            input_gate=self.input_gate[:m],
            forget_gate=self.forget_gate[:m],
            output_gate=self.output_gate[:m],
            cell_tanh=self.cell_tanh[:m],
            table_rows=self.table_rows[:m],
            layers=layers,
            logits=self.logits[:m],
        )


@dataclass(frozen=True)
class StepViews:
    """`FusedLSTMStep`'s buffers cut to a step's rows; per layer (xh, cell, hidden, the next layer's input)."""

    gates: torch.Tensor
    sigmoids: torch.Tensor
    candidate: torch.Tensor
    input_gate: torch.Tensor
    forget_gate: torch.Tensor
    output_gate: torch.Tensor
    cell_tanh: torch.Tensor
    table_rows: torch.Tensor
    layers: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]]
    logits: torch.Tensor


class Product:
    """`x @ weight^T (+ bias) (+ add)` for a fixed weight. In bf16 on a CPU it goes through oneDNN
    with the weight packed once into oneDNN's blocked layout (measured here for a 1,024 x 2,048 weight
    at batch 64: 230 us, against 380 us for a plain bf16 product and 1,200 us in fp32)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype, batch: int):
        self.bias = None if bias is None else bias.to(dtype)
        self.packed = onednn_packed(weight.to(dtype), batch)
        self.weight_t = weight.t().contiguous().to(dtype) if self.packed is None else None
        self.writes_float32 = self.packed is None and dtype == torch.float32  # into a float32 `out` directly

    def __call__(
        self, x: torch.Tensor, add: torch.Tensor | None = None, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The product; written into `out`, a float32 buffer, if given."""
        if out is not None and not self.writes_float32:
            return out.copy_(self(x, add))
        if self.packed is not None:
            if add is None:
                return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
            return torch.ops.mkldnn._linear_pointwise.binary(x, add, self.packed, self.bias, "add")
        base = self.bias if add is None else add if self.bias is None else add + self.bias
        return torch.mm(x, self.weight_t, out=out) if base is None else torch.addmm(base, x, self.weight_t, out=out)


def onednn_packed(weight: torch.Tensor, batch: int) -> torch.Tensor | None:
    """The bf16 CPU weight in oneDNN's layout for `batch` rows, or None where that is not on offer
    (fp32, a GPU, a torch build without oneDNN or without these ops)."""
    if weight.dtype != torch.bfloat16 or weight.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return None
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, batch)
        probe, add = torch.zeros(batch, weight.size(1), dtype=weight.dtype), torch.zeros(batch, weight.size(0))
        torch.ops.mkldnn._linear_pointwise(probe, packed, None, "none", [], "")
        torch.ops.mkldnn._linear_pointwise.binary(probe, add.to(weight.dtype), packed, None, "add")
    except (AttributeError, RuntimeError):
        return None
    return packed
