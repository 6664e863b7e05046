"""Native Linf Square attack (Andriushchenko et al. 2020): black-box, score-based, query-limited.

Follows the authors' reference (as used in AutoAttack): vertical-stripe initialisation, margin
loss, one random square window per iteration whose size follows the p schedule (p_init 0.8,
halved at queries 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000), only still-unbroken examples
are queried. It uses forward passes only, which makes it the test for gradient masking: a
black-box attack that beats the white-box ones means the gradients are lying.

:class:`SquareSearch` is the search as an object, so that it can be continued: the escalation
ladder (:mod:`runner.eval.escalation`) runs it to 1,000 queries per example, then on to 5,000 on
the survivors, and so on, instead of starting each larger budget from fresh stripes again. Two
things it adds to AutoAttack's PyTorch version, each off unless asked for:

- ``skip_noop``: a proposal that would leave the image unchanged (its window already holds the
  drawn sign, or is clipped at the pixel range) gets a new sign instead of wasting a query, as in
  the authors' own NumPy code (``square-attack``'s ``square_attack_linf``); windows and signs are
  then drawn per example, as there.
- ``restart_stale``: once the window has reached its final size (the schedule shrinks it no more)
  and an example's margin has not improved over ``STALE_FACTOR`` times as many queries as there
  are distinct proposals of that size (``2**c`` signs x window positions), the example is almost
  surely at a local minimum that no proposal leaves (each one was drawn about ``STALE_FACTOR``
  times; missed with probability about ``e**-STALE_FACTOR``): its remaining queries go to a fresh
  search (new stripes, the schedule from the start), and its result is the lowest-margin point of
  all its searches. On small images (8 x 8 digits: 128 proposals once windows are one pixel, from
  query 1,000 on) a 5,000-query run is otherwise mostly stuck; on CIFAR-sized ones (8,192
  proposals) it never fires within 10,000 queries, and the search is AutoAttack's.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

_SCHEDULE = [(10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
             (6000, 128), (8000, 256)]  # fmt: skip
STALE_FACTOR = 4


def p_selection(p_init: float, it: int) -> float:
    div = 1
    for start, d in _SCHEDULE:
        if it > start:
            div = d * 2
    return p_init / div


def _side(p: float, n_features: int, c: int, h: int, w: int) -> int:
    return min(max(int(round(math.sqrt(p * n_features / c))), 1), min(h, w) - 1)


@torch.no_grad()
def _margin(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    logits = model(x)
    true = logits.gather(1, y[:, None]).squeeze(1)
    return true - logits.scatter(1, y[:, None], float("-inf")).amax(1)


class SquareSearch:
    """Square's search on (x, y), continued by each :meth:`run` (the budget is per example, in
    queries, counted from the first call; the initial stripes cost one)."""

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        eps: float,
        p_init: float = 0.8,
        lo: float = 0.0,
        hi: float = 1.0,
        generator: torch.Generator | None = None,
        skip_noop: bool = False,
        restart_stale: bool = False,
    ) -> None:
        self.model, self.x, self.y, self.eps = model, x.detach(), y, eps
        self.p_init, self.lo, self.hi, self.gen = p_init, lo, hi, generator
        if restart_stale and not skip_noop:  # AutoAttack's shared window needs searches in step
            raise ValueError("restart_stale needs per-example windows (skip_noop=True)")
        self.skip_noop, self.restart_stale = skip_noop, restart_stale
        n, c, h, w = x.shape
        self.shape = (c, h, w)
        dev = x.device
        self.queries = torch.zeros(n, dtype=torch.long, device=dev)  # used, per example
        self.it = torch.zeros(n, dtype=torch.long, device=dev)  # of the current search
        self.stale = torch.zeros(n, dtype=torch.long, device=dev)  # queries without a gain
        self.searches = torch.ones(n, dtype=torch.long, device=dev)
        self.cur = self.best = torch.empty_like(self.x)
        self.margin = self.best_margin = torch.empty(n, dtype=x.dtype, device=dev)
        # the window side in each segment of the schedule; from final_it on it shrinks no more
        sides = [_side(p_init / div, c * h * w, c, h, w)
                 for div in (1, *(2 * d for _, d in _SCHEDULE))]  # fmt: skip
        starts = [-1, *(start for start, _ in _SCHEDULE)]
        k = len(sides) - 1
        while k > 0 and sides[k - 1] == sides[-1]:
            k -= 1
        s_final, self.final_it = sides[-1], starts[k]
        self.patience = STALE_FACTOR * 2**c * (h - s_final + 1) * (w - s_final + 1)
        self._started = False

    def _rand_sign(self, *shape: int) -> Tensor:
        r = torch.randint(0, 2, shape, device=self.x.device, generator=self.gen)
        return (2 * r - 1).to(self.x.dtype)

    def _stripes(self, idx: Tensor) -> None:
        """A fresh search for examples ``idx``: vertical stripes of +-eps (one query)."""
        c, _, w = self.shape
        xi = self.x[idx]
        self.cur[idx] = (xi + self.eps * self._rand_sign(len(idx), c, 1, w)).clamp(self.lo, self.hi)
        self.margin[idx] = _margin(self.model, self.cur[idx], self.y[idx])
        self.it[idx], self.stale[idx] = 0, 0
        self.queries[idx] += 1

    def _sides(self, it: Tensor) -> Tensor:
        """The window side per example at its own position in the schedule."""
        c, h, w = self.shape
        k = torch.zeros_like(it)
        for start, _ in _SCHEDULE:
            k += (it > start).long()
        p = self.p_init / (2.0**k).to(self.x.dtype)
        s = torch.round(torch.sqrt(p * (h * w)))  # p * n_features / c
        return s.clamp(1, min(h, w) - 1).long()

    def _propose(self, idx: Tensor) -> Tensor:
        """One candidate per example in ``idx``: a square window set to +-eps (per channel)."""
        c, h, w = self.shape
        m, dev = len(idx), self.x.device
        xc, xb = self.x[idx], self.cur[idx]
        if not self.skip_noop:  # AutoAttack's: one window and one sign for the whole batch
            s = _side(p_selection(self.p_init, int(self.it[idx[0]])), c * h * w, c, h, w)
            vh = int(torch.randint(0, h - s + 1, (1,), generator=self.gen, device=dev))
            vw = int(torch.randint(0, w - s + 1, (1,), generator=self.gen, device=dev))
            new = xb.clone()
            new[:, :, vh : vh + s, vw : vw + s] += 2.0 * self.eps * self._rand_sign(1, c, 1, 1)
            return torch.minimum(torch.maximum(new, xc - self.eps), xc + self.eps).clamp(
                self.lo, self.hi
            )
        s = self._sides(self.it[idx])
        u = torch.rand((m, 2), device=dev, generator=self.gen)
        vh = (u[:, 0] * (h - s + 1)).long().view(m, 1, 1, 1)
        vw = (u[:, 1] * (w - s + 1)).long().view(m, 1, 1, 1)
        rows = torch.arange(h, device=dev).view(1, 1, h, 1)
        cols = torch.arange(w, device=dev).view(1, 1, 1, w)
        sv = s.view(m, 1, 1, 1)
        window = (rows >= vh) & (rows < vh + sv) & (cols >= vw) & (cols < vw + sv)
        sign = self._rand_sign(m, c, 1, 1)
        for attempt in range(9):
            new = torch.where(window, xc + self.eps * sign, xb).clamp(self.lo, self.hi)
            same = (new == xb).flatten(1).all(1)
            if not bool(same.any()):
                break
            # the authors' rule: draw the sign again; after 8 tries flip it (always a change)
            redraw = -sign if attempt == 7 else self._rand_sign(m, c, 1, 1)
            sign = torch.where(same.view(m, 1, 1, 1), redraw, sign)
        return new

    def _restart_stale(self, todo: Tensor, queries: int) -> None:
        stuck = ((self.best_margin > 0) & todo & (self.queries < queries)
                 & (self.it > self.final_it) & (self.stale >= self.patience))  # fmt: skip
        stuck = stuck.nonzero().squeeze(1)
        if len(stuck):
            self.searches[stuck] += 1
            self._stripes(stuck)

    def _start(self) -> None:
        self.cur = torch.empty_like(self.x)
        self.margin = torch.empty(len(self.x), dtype=self.x.dtype, device=self.x.device)
        self._stripes(torch.arange(len(self.x), device=self.x.device))
        self.best, self.best_margin = self.cur.clone(), self.margin.clone()
        self._started = True

    @torch.no_grad()
    def run(self, queries: int, idx: Tensor | None = None) -> Tensor:
        """Go on until each example of ``idx`` (default: all) has used ``queries`` queries or is
        misclassified; returns the lowest-margin point found per example (all of x)."""
        if not self._started:
            self._start()
        todo = torch.zeros(len(self.x), dtype=torch.bool, device=self.x.device)
        todo[slice(None) if idx is None else idx] = True
        while True:
            if self.restart_stale:
                self._restart_stale(todo, queries)
                self._keep_best()
            act = (todo & (self.best_margin > 0) & (self.queries < queries)).nonzero().squeeze(1)
            if len(act) == 0:
                break
            new = self._propose(act)
            m = _margin(self.model, new, self.y[act])
            better = m < self.margin[act]
            self.margin[act] = torch.where(better, m, self.margin[act])
            self.cur[act] = torch.where(better.view(-1, 1, 1, 1), new, self.cur[act])
            self.stale[act] = torch.where(better, 0, self.stale[act] + 1)
            self.it[act] += 1
            self.queries[act] += 1
            self._keep_best(act)
        return self.best

    def _keep_best(self, idx: Tensor | None = None) -> None:
        idx = torch.arange(len(self.x), device=self.x.device) if idx is None else idx
        gain = self.margin[idx] < self.best_margin[idx]
        if bool(gain.any()):
            g = idx[gain]
            self.best_margin[g] = self.margin[g]
            self.best[g] = self.cur[g]


@torch.no_grad()
def square_linf(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    queries: int = 5000,
    p_init: float = 0.8,
    lo: float = 0.0,
    hi: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Adversarial examples within the Linf eps-ball (the lowest-margin point where none fools):
    AutoAttack's Square, one search of ``queries`` queries per example."""
    return SquareSearch(model, x, y, eps, p_init, lo, hi, generator).run(queries)
