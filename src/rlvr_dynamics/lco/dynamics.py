"""Gradient-dynamics toys of LCO (notebook 05): the one simulator behind the dynamics figures.

Three settings, all minimising the per-token losses of :mod:`rlvr_dynamics.lco.losses`:

1. :func:`logit_flow` - "logits as parameters" (spec N14, §5.1 A2): z in R^n is the parameter,
   so J = I and the parameter-gradient norm is the logit-gradient norm. Reproduces the curves of
   V1 Figs. 2-5 and V2 Figs. 3-5, 8, 9 (SFT, PG, PG-IS, PPO, LCO) and the N14 reference numbers.
2. :func:`fixed_batch_dynamics` - the same losses through a real Jacobian (spec A3/A5, [code]
   protocol of G17): one fixed batch of sampled responses, optimised again and again, with the
   metrics of the V1 figures (G16: global and q/k/v-mean gradient norms, action probability,
   entropy, sampled / non-sampled logit gradients).
3. :func:`first_step_cosine` (C18: at the anchor LCO's logit gradient is a positive multiple of
   REINFORCE's) and :func:`one_update_kl` / :func:`kl_vs_rho` (V1 Table 4, gap G15).

Targets are fixed during a run: the anchor of the LCO targets is the initial (rollout) logits and
pi_old the initial log-probabilities (G4 ``rollout`` reading), so PG-IS / PPO ratios start at 1.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from rlvr_dynamics.lco.losses import LossOptions, check_loss_name, per_token_loss

DEFAULT_OPTIONS = LossOptions()  # frozen: safe as a shared default
N14_SETTINGS = ((-1.0, 0.9), (1.0, 0.3))  # (Psi, start pi_i) of spec N14
V1_TABLE4_RHO_PAIRS = ((1.8, 0.8), (1.8, 0.9), (1.8, 0.95), (1.9, 0.9), (1.7, 0.9))  # (rho+, rho-), V1 Table 4
FLOW_COLUMNS = ("pi_i", "loss", "grad_norm", "sampled_grad", "nonsampled_grad")


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily run torch on ``n`` intra-op threads (``None``: leave as is).

    Tiny tensors gain nothing from threads, and on a busy 2-core machine a (2, 20) softmax split
    over 2 threads was measured 17x slower than on one.
    """
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def model_threads(model) -> int | None:
    """1 thread for models under 5M parameters (the tiny policy: 8 ms vs 120 ms per step on a busy
    2-core machine), else torch's setting (``None``)."""
    return 1 if sum(p.numel() for p in model.parameters()) < 5_000_000 else None


def _model_threaded(function: Callable) -> Callable:
    """Run ``function(model, ...)`` under :func:`model_threads` (``model`` is its first argument)."""

    @functools.wraps(function)
    def wrapper(model, *args, **kwargs):
        with torch_threads(model_threads(model)):
            return function(model, *args, **kwargs)

    return wrapper


# ============================================================== 1. logits as parameters (N14)
def start_logits(start_prob: float, n: int = 20) -> torch.Tensor:
    """Logits (float64) with z_j = 0 for j >= 1 and z_0 set so that softmax(z)_0 = ``start_prob``."""
    z = torch.zeros(n, dtype=torch.float64)
    z[0] = math.log(start_prob * (n - 1) / (1.0 - start_prob))
    return z


def logit_flows(loss: str, settings: Sequence[tuple[float, float]] = N14_SETTINGS, n: int = 20, lr: float = 0.05,
                steps: int = 3000, options: LossOptions = DEFAULT_OPTIONS) -> pd.DataFrame:
    """Plain GD z <- z - lr grad_z L on one logit vector per (Psi, start pi_i) setting, all at once.

    The sampled index is i = 0; anchor and pi_old are the initial logits (fixed target). Rows are
    the states after 0..``steps`` updates (the metrics are those *before* the next update):
    ``pi_i``, per-token ``loss``, ``grad_norm`` = ||grad_z L||, ``sampled_grad`` = dL/dz_i and
    ``nonsampled_grad`` = dL/dz_j of a non-sampled token (all equal here).
    """
    check_loss_name(loss)
    z = torch.stack([start_logits(p, n) for _, p in settings])  # (R, n): one independent run per row
    anchor = z.clone()
    actions = torch.zeros(len(settings), dtype=torch.long)
    psi = torch.tensor([s for s, _ in settings], dtype=torch.float64)
    old_logprobs = F.log_softmax(anchor, dim=-1)[:, 0]
    out = torch.empty(steps + 1, len(settings), len(FLOW_COLUMNS), dtype=torch.float64)
    with torch_threads(1):
        for step in range(steps + 1):
            z = z.detach().requires_grad_(True)
            per_run = per_token_loss(loss, z, actions, psi, anchor, old_logprobs, options)
            (grad,) = torch.autograd.grad(per_run.sum(), z)  # rows do not interact: row r gets dL_r/dz_r
            with torch.no_grad():
                out[step] = torch.stack([z.softmax(-1)[:, 0], per_run, grad.norm(dim=-1), grad[:, 0], grad[:, 1]], -1)
                z = z - lr * grad
    frames = []
    for r, (s, p) in enumerate(settings):
        frame = pd.DataFrame(out[:, r].numpy(), columns=list(FLOW_COLUMNS))
        frame.insert(0, "step", range(steps + 1))
        frames.append(frame.assign(loss_name=loss, psi=s, start_prob=p))
    return pd.concat(frames, ignore_index=True)


def logit_flow(loss: str, psi: float, start_prob: float, n: int = 20, lr: float = 0.05, steps: int = 3000,
               options: LossOptions = DEFAULT_OPTIONS) -> pd.DataFrame:
    """Spec N14 for one loss and one (Psi, start pi_i): columns step, pi_i, loss, grad_norm, sampled_grad,
    nonsampled_grad (see :func:`logit_flows`)."""
    return logit_flows(loss, [(psi, start_prob)], n, lr, steps, options).drop(columns=["loss_name", "psi", "start_prob"])


def logit_flow_grid(losses: Iterable[str], settings: Sequence[tuple[float, float]] = N14_SETTINGS,
                    options: LossOptions = DEFAULT_OPTIONS, **kwargs) -> pd.DataFrame:
    """:func:`logit_flows` for several losses, stacked (columns ``loss_name``, ``psi``, ``start_prob``)."""
    return pd.concat([logit_flows(name, settings, options=options, **kwargs) for name in losses], ignore_index=True)


def flow_summary(flows: pd.DataFrame) -> pd.DataFrame:
    """Initial / peak / final grad norm and pi_i per (loss, Psi) of :func:`logit_flow_grid` (the N14 numbers)."""
    rows = []
    for (name, psi), run in flows.groupby(["loss_name", "psi"], sort=False):
        peak = run.grad_norm.idxmax()
        rows.append({
            "loss": name, "psi": psi, "start_pi": run.pi_i.iloc[0], "grad_norm_0": run.grad_norm.iloc[0],
            "grad_norm_peak": run.grad_norm[peak], "pi_at_peak": run.pi_i[peak], "step_at_peak": run.step[peak],
            "grad_norm_end": run.grad_norm.iloc[-1], "pi_end": run.pi_i.iloc[-1],
            "monotone": bool((run.grad_norm.diff().dropna() <= 1e-12).all()),
        })
    return pd.DataFrame(rows)


# ============================================================== 2. fixed batch through a real Jacobian
@dataclass
class FixedBatch:
    """Sampled responses kept fixed for repeated updates (spec G17 [code] protocol).

    ``input_ids`` / ``attention_mask`` are left-padded prompt + completion rows; ``completion_mask``
    marks the completion tokens (including the stop token when one was emitted); ``reward`` is the
    sequence reward, +1 correct / -1 incorrect (V1's rule reward), Psi of every response token.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    reward: torch.Tensor
    completions: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.input_ids.size(0)

    def select(self, index: Sequence[int] | torch.Tensor) -> FixedBatch:
        """The rows ``index`` (left padding trimmed to the longest kept row)."""
        index = torch.as_tensor(index, dtype=torch.long)
        keep = self.attention_mask[index].any(0).nonzero()
        start = int(keep.min()) if len(keep) else 0
        pick = [self.completions[i] for i in index.tolist()] if self.completions else []
        answers = [self.answers[i] for i in index.tolist()] if self.answers else []
        return FixedBatch(self.input_ids[index, start:], self.attention_mask[index, start:],
                          self.completion_mask[index, start:], self.reward[index], pick, answers)

    def subset(self, sign: str = "all", n: int | None = None) -> FixedBatch:
        """Only negatives (``neg``), only positives (``pos``), all, or ``mixed`` (alternating pos / neg);
        at most ``n`` sequences, in sampling order."""
        pos, neg = (self.reward > 0).nonzero().flatten().tolist(), (self.reward < 0).nonzero().flatten().tolist()
        if sign == "mixed":
            index = [i for pair in zip(pos, neg, strict=False) for i in pair]
        else:
            index = {"all": list(range(len(self))), "pos": pos, "neg": neg}.get(sign)
            if index is None:
                raise ValueError(f"sign = {sign!r} is invalid: allowed values are ['all', 'pos', 'neg', 'mixed']")
        return self.select(index[:n])

    def response_actions(self) -> torch.Tensor:
        """The sampled token ids of all response tokens, flattened (N,)."""
        return self.input_ids[:, 1:][self.completion_mask[:, 1:].bool()]

    def response_psi(self) -> torch.Tensor:
        """Psi of every response token (N,): the sequence reward copied to its tokens."""
        mask = self.completion_mask[:, 1:].bool()
        return self.reward[:, None].expand_as(mask)[mask].float()


def exact_answer(completion: str, answer: str) -> bool:
    """The tiny policy's reward: the completion text (stop token removed) is exactly the answer."""
    return completion.strip() == answer


def last_number_answer(completion: str, answer: str) -> bool:
    """A numeric reward for chat models: the last number in the text equals the answer."""
    numbers = re.findall(r"-?\d+(?:\.\d+)?", completion.replace(",", ""))
    return bool(numbers) and float(numbers[-1]) == float(answer)


def chat_arithmetic_prompts(tokenizer, questions: Sequence[str], instruction: str = "Answer with the number only.",
                            system: str | None = None) -> list[str]:
    """Chat-template prompts 'What is 3+4? <instruction>' for an instruct model (``a+b=`` questions).

    ``system`` replaces the template's default system message (SmolLM2's adds ~16 tokens).
    """
    head = [{"role": "system", "content": system}] if system is not None else []
    return [tokenizer.apply_chat_template(head + [{"role": "user", "content": f"What is {q.rstrip('=')}? {instruction}"}],
                                          tokenize=False, add_generation_prompt=True) for q in questions]


def _stop_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    return {int(e) for e in [*eos, tokenizer.eos_token_id] if e is not None}


@_model_threaded
@torch.no_grad()
def sample_batch(model, tokenizer, prompts: Sequence[str], answers: Sequence[str], samples_per_prompt: int = 1,
                 max_new_tokens: int = 8, temperature: float = 1.0, seed: int = 0, top_p: float = 1.0,
                 reward: Callable[[str, str], bool] = exact_answer) -> FixedBatch:
    """Sample ``samples_per_prompt`` completions per prompt (seeded) and label them +-1.

    A completion is cut after its first stop token (the tokenizer's EOS or the generation config's);
    ``reward(text, answer)`` judges the decoded text without special tokens, and a completion that
    never stopped is wrong. Works for any HF causal LM (the prompts are raw strings: apply a chat
    template first, e.g. :func:`chat_arithmetic_prompts`).
    """
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width, pad = max(map(len, encoded)), tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
    attention = (torch.arange(width)[None] >= torch.tensor([width - len(e) for e in encoded])[:, None]).long()
    torch.manual_seed(seed)
    generated = model.generate(input_ids=ids, attention_mask=attention, do_sample=True, temperature=temperature,
                               top_p=top_p, top_k=0, max_new_tokens=max_new_tokens,
                               num_return_sequences=samples_per_prompt, pad_token_id=pad)[:, width:]
    stops = _stop_ids(model, tokenizer)
    rows, masks, rewards, texts, labels = [], [], [], [], []
    for r, tokens in enumerate(generated.tolist()):
        q = r // samples_per_prompt
        cut = next((k + 1 for k, t in enumerate(tokens) if t in stops), None)
        completion = tokens[:cut] if cut else tokens
        text = tokenizer.decode(completion, skip_special_tokens=True)
        rows.append(encoded[q] + completion)
        masks.append([0] * len(encoded[q]) + [1] * len(completion))
        rewards.append(1.0 if cut and reward(text, answers[q]) else -1.0)
        texts.append(text)
        labels.append(answers[q])
    width = max(map(len, rows))
    return FixedBatch(
        input_ids=torch.tensor([[pad] * (width - len(x)) + x for x in rows]),
        attention_mask=torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in rows]),
        completion_mask=torch.tensor([[0] * (width - len(m)) + m for m in masks]),
        reward=torch.tensor(rewards),
        completions=texts,
        answers=labels,
    )


def response_logits(model, batch: FixedBatch) -> torch.Tensor:
    """Logits (N, V) (float32 or higher) of the policy at every response token of ``batch``."""
    position_ids = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=position_ids).logits
    logits = logits[:, :-1][batch.completion_mask[:, 1:].bool()]
    return logits if logits.dtype == torch.float64 else logits.float()


def _optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"optimizer = {name!r} is invalid: allowed values are ['adam', 'sgd']")


def _fresh_copy(model):
    policy = copy.deepcopy(model)
    policy.eval()  # no dropout: the updates are deterministic
    policy.zero_grad(set_to_none=True)
    return policy


def _batch_loss(policy, batch: FixedBatch, loss: str, psi: torch.Tensor, anchor: torch.Tensor,
                old_logprobs: torch.Tensor, options: LossOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """(token-mean loss, response logits) at the current parameters."""
    logits = response_logits(policy, batch)
    per_token = per_token_loss(loss, logits, batch.response_actions(), psi, anchor, old_logprobs, options)
    return per_token.mean(), logits


def _anchor(policy, batch: FixedBatch) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        anchor = response_logits(policy, batch)
    return anchor, F.log_softmax(anchor, dim=-1).gather(-1, batch.response_actions()[:, None]).squeeze(-1)


def qkv_grad_norm(model) -> float:
    """[code] metric (G16): mean over layers (and q/k/v) of the Frobenius norms of q_proj/k_proj/v_proj weight grads."""
    norms = [p.grad.norm() for name, p in model.named_parameters()
             if p.grad is not None and re.search(r"(q|k|v)_proj\.weight$", name)]
    return float(torch.stack(norms).mean()) if norms else float("nan")


def global_grad_norm(model) -> float:
    """||grad_theta L||_2 over all parameters (G16)."""
    grads = [p.grad.pow(2).sum() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(grads).sum().sqrt())


@_model_threaded
def fixed_batch_dynamics(model, batch: FixedBatch, loss: str, optimizer: str = "adam", lr: float = 1e-4,
                         steps: int = 100, options: LossOptions = DEFAULT_OPTIONS, psi_override: float | None = None,
                         seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """Minimise the token-mean ``loss`` on one fixed batch ``steps`` times (V1 Figs. 2-5, V2 Figs. 3-5, 8, 9).

    A deep copy of ``model`` is trained; Psi = the sequence reward on every response token (or
    ``psi_override``); the anchor of the LCO targets and pi_old are the batch's initial logits /
    log-probs. Rows are the states after 0..``steps`` updates, with the metrics *before* the next
    update: ``loss``, ``grad_norm`` (global), ``qkv_grad_norm`` ([code] metric), ``action_prob``
    (mean pi(a_t)), ``entropy`` (mean full-vocabulary entropy), ``sampled_grad`` = mean_t
    |dl_t/dz_{t,a_t}| and ``nonsampled_grad`` = mean_t max_{j != a_t} |dl_t/dz_{t,j}| of the
    *per-token* loss l_t (the token-mean gradient times the token count).

    Adam's first steps move every parameter by ~lr whatever its gradient, so even an LCO norm jumps
    after step 0 (overshoot past the target) unless lr is small; plain SGD at a stable lr decays
    smoothly but slowly. Any HF causal LM works (tiny policy: ~8 ms/step; SmolLM2-135M, 4 x 45
    tokens: ~3 s/step on 2 busy CPU cores).
    """
    check_loss_name(loss)
    torch.manual_seed(seed)
    policy = _fresh_copy(model)
    anchor, old_logprobs = _anchor(policy, batch)
    actions = batch.response_actions()
    psi = batch.response_psi() if psi_override is None else torch.full(actions.shape, float(psi_override))
    opt = _optimizer(optimizer, policy.parameters(), lr)
    rows = []
    for step in tqdm(range(steps + 1), disable=not progress, desc=f"{loss} fixed batch"):
        opt.zero_grad(set_to_none=True)
        value, logits = _batch_loss(policy, batch, loss, psi, anchor, old_logprobs, options)
        logits.retain_grad()
        value.backward()
        with torch.no_grad():
            token_grad = logits.grad * logits.size(0)
            sampled = token_grad.gather(-1, actions[:, None]).squeeze(-1)
            others = token_grad.abs().scatter(-1, actions[:, None], 0.0).amax(-1)
            log_p = F.log_softmax(logits, dim=-1)
            rows.append({
                "step": step, "loss": value.item(), "grad_norm": global_grad_norm(policy),
                "qkv_grad_norm": qkv_grad_norm(policy), "action_prob": log_p.gather(-1, actions[:, None]).exp().mean().item(),
                "entropy": -(log_p.exp() * log_p).sum(-1).mean().item(),
                "sampled_grad": sampled.abs().mean().item(), "nonsampled_grad": others.mean().item(),
            })
        if step < steps:
            opt.step()
    return pd.DataFrame(rows)


def dynamics_grid(model, batch: FixedBatch, losses: Iterable[str], psis: Iterable[float | None] = (-1.0, 1.0),
                  progress: bool = False, **kwargs) -> pd.DataFrame:
    """:func:`fixed_batch_dynamics` for every (loss, Psi) pair on the same batch, stacked with columns
    ``loss_name`` and ``psi`` (``None`` = the batch's own +-1 rewards)."""
    runs = [(name, psi) for name in losses for psi in psis]
    frames = [fixed_batch_dynamics(model, batch, name, psi_override=psi, **kwargs).assign(loss_name=name, psi=psi)
              for name, psi in tqdm(runs, disable=not progress, desc="dynamics grid")]
    return pd.concat(frames, ignore_index=True)


def dynamics_summary(runs: pd.DataFrame,
                     metrics: Sequence[str] = ("grad_norm", "qkv_grad_norm", "action_prob", "sampled_grad")
                     ) -> pd.DataFrame:
    """Initial / peak / final value of each metric per (loss, Psi) of :func:`dynamics_grid`, plus the
    spec's C5/C6 ratios of the global grad norm (peak / initial, final / initial)."""
    rows = []
    for (name, psi), run in runs.groupby(["loss_name", "psi"], sort=False, dropna=False):
        row = {"loss": name, "psi": psi}
        for m in metrics:
            row |= {f"{m}_0": run[m].iloc[0], f"{m}_peak": run[m].max(), f"{m}_end": run[m].iloc[-1]}
        g = run.grad_norm.to_numpy()
        row |= {"grad_peak_step": int(g.argmax()), "grad_ratio_peak": g.max() / g[0], "grad_ratio_end": g[-1] / g[0]}
        rows.append(row)
    return pd.DataFrame(rows)


# ============================================================== 3. first step: cosine to REINFORCE (C18)
def _param_grad(policy, batch: FixedBatch, loss: str, anchor: torch.Tensor, old_logprobs: torch.Tensor,
                options: LossOptions) -> torch.Tensor:
    """Flattened float64 gradient of the token-mean ``loss`` at the current parameters."""
    policy.zero_grad(set_to_none=True)
    value, _ = _batch_loss(policy, batch, loss, batch.response_psi(), anchor, old_logprobs, options)
    value.backward()
    grad = torch.cat([p.grad.flatten().double() for p in policy.parameters() if p.grad is not None])
    policy.zero_grad(set_to_none=True)
    return grad


def _logit_grads(anchor: torch.Tensor, actions: torch.Tensor, psi: torch.Tensor, loss: str,
                 options: LossOptions) -> torch.Tensor:
    """Per-token logit gradients dl_t/dz_t (N, V) at the anchor, in float64."""
    z = anchor.double().detach().requires_grad_(True)
    per_token = per_token_loss(loss, z, actions, psi.double(), options=options)  # anchor = z (first step)
    return torch.autograd.grad(per_token.sum(), z)[0]


@_model_threaded
def first_step_cosine(model, batch: FixedBatch, options: LossOptions = DEFAULT_OPTIONS,
                      losses: Sequence[str] = ("lco", "lco_kld")) -> pd.DataFrame:
    """Cosine between each LCO loss's first gradient and REINFORCE's (``pg``), at the anchor (C18).

    Per subset (``pos``, ``neg``, ``mixed`` = the whole batch): ``param_cosine`` of the
    token-mean parameter gradients (< 1, since LCO re-weights tokens by |rho-1| pi_i/(1-pi_i) in V1),
    ``norm_ratio`` = ||g_LCO|| / ||g_PG||, and the per-token logit-gradient cosine
    (``logit_cosine_min`` / ``_mean``, float64; 1 by C18) over tokens where both gradients are
    non-zero; ``zero_grad_tokens`` counts tokens LCO leaves alone (e.g. pi_i >= p_max with Psi > 0, G2).
    """
    policy = _fresh_copy(model)
    rows = []
    for subset in ("pos", "neg", "mixed"):
        part = batch if subset == "mixed" else batch.subset(subset)
        if len(part) == 0:
            continue
        anchor, old_logprobs = _anchor(policy, part)
        actions, psi = part.response_actions(), part.response_psi()
        g_pg = _param_grad(policy, part, "pg", anchor, old_logprobs, options)
        z_pg = _logit_grads(anchor, actions, psi, "pg", options)
        for name in losses:
            g = _param_grad(policy, part, name, anchor, old_logprobs, options)
            z = _logit_grads(anchor, actions, psi, name, options)
            norms = z.norm(dim=-1) * z_pg.norm(dim=-1)
            live = norms > 1e-12 * z_pg.norm(dim=-1).max()
            cos = (z * z_pg).sum(-1)[live] / norms[live]
            rows.append({
                "subset": subset, "loss": name, "sequences": len(part), "tokens": len(actions),
                "param_cosine": F.cosine_similarity(g, g_pg, dim=0).item(), "norm_ratio": (g.norm() / g_pg.norm()).item(),
                "logit_cosine_min": cos.min().item() if len(cos) else float("nan"),
                "logit_cosine_mean": cos.mean().item() if len(cos) else float("nan"),
                "zero_grad_tokens": int((~live).sum()),
            })
    return pd.DataFrame(rows)


# ============================================================== 4. KL of one update (V1 Table 4, G15)
@_model_threaded
def one_update_kl(model, batch: FixedBatch, loss: str, options: LossOptions, lr: float, optimizer: str = "sgd") -> float:
    """Token-mean KL(pi_before || pi_after) over the response tokens after one optimiser step (G15).

    Full vocabulary, float64. SGD is the default because a fresh Adam's first step is
    ~ lr * sign(g): it hides the gradient magnitude, which is what rho changes.
    """
    policy = _fresh_copy(model)
    anchor, old_logprobs = _anchor(policy, batch)
    opt = _optimizer(optimizer, policy.parameters(), lr)
    value, _ = _batch_loss(policy, batch, loss, batch.response_psi(), anchor, old_logprobs, options)
    value.backward()
    opt.step()
    with torch.no_grad():
        before = F.log_softmax(anchor.double(), dim=-1)
        after = F.log_softmax(response_logits(policy, batch).double(), dim=-1)
    return (before.exp() * (before - after)).sum(-1).mean().item()


def kl_vs_rho(model, batch: FixedBatch, rho_pairs: Iterable[tuple[float, float]], lr: float, host: str = "pg",
              optimizer: str = "sgd", options: LossOptions = DEFAULT_OPTIONS) -> pd.DataFrame:
    """V1 Table 4 on ``batch`` (use a mixed one): one-update KL of V1-LCO at each (rho+, rho-) vs the
    host loss (``pg`` = REINFORCE), with ``delta_kl`` = |KL(LCO) - KL(host)|. SGD by default (see
    :func:`one_update_kl`)."""
    base = one_update_kl(model, batch, host, options, lr, optimizer)
    rows = []
    for rho_pos, rho_neg in rho_pairs:
        kl = one_update_kl(model, batch, "lco", replace(options, rho_pos=rho_pos, rho_neg=rho_neg), lr, optimizer)
        rows.append({"rho_pos": rho_pos, "rho_neg": rho_neg, "kl": kl, "kl_base": base, "delta_kl": abs(kl - base)})
    return pd.DataFrame(rows)
