"""Numba kernels of the trapped-ball fill; ``s2pdata.stages.regions`` validates and pads, these compute.

Images are passed flat and padded (row-major, width wp = w + 2); the 4-neighbours of p are p-1,
p+1 (same row) and p-wp, p+wp. What makes them fast (each was measured): whole-row passes index
row views from 1, so Numba emits no negative-index wraparound code and LLVM can vectorise them;
selects are written as arithmetic, because Numba compiles ``x if c else y`` to a branch that
mispredicts on noisy maps; a pass never reads a neighbour it has just written (that chains every
pixel to the last through memory); histograms alternate two counter arrays by column parity.
"""

from __future__ import annotations

import numba
import numpy as np

from s2pdata._jit import JIT

# Pixel codes: labels are 1..n; a pixel still open to a breadth-first growth is >= OPEN
# (OPEN + its old label while slivers dissolve); a pixel claimed in the round in progress is
# -(2 * label + round parity). Needs 2 * n + 1 < 2**31, hence the pixel limit.
_OPEN = 1 << 30
MAX_PIXELS = 1 << 29


@numba.njit(**JIT, inline="always")
def _reach(lab, q, pend, npar, nxt, nn):
    """Pixel ``q`` seen from a front pixel whose label codes as ``pend`` for the next round:
    open -> claim it; claimed this round with a larger label -> take it. Branch-free (Numba
    compiles ``x if c else y`` to a branch, so selects are written as arithmetic)."""
    v = lab[q]
    claim = np.int32(v >= _OPEN)
    take = claim | (np.int32(v < pend) & np.int32((v & 1) == npar))
    lab[q] = v + take * (pend - v)
    nxt[nn] = np.int32(q)
    return nn + claim


@numba.njit(**JIT)
def _bfs(lab, front, nf, nxt, wp, parity):
    """Breadth-first growth, one round per loop. ``front`` holds the ``nf`` pixels claimed in
    the last round, each pending as ``-(2 * label + parity)``; a pixel is open while its value
    is >= ``_OPEN``. Each round finalises the front and lets every open 4-neighbour take the
    smallest label among the front pixels next to it (pending with the other parity, so the
    round in progress is never confused with the next one). Unsigned indices: no wraparound
    code."""
    one = np.uint64(1)
    wpu = np.uint64(wp)
    while nf > 0:
        npar = parity ^ 1
        nn = np.int64(0)
        for t in range(nf):
            p = np.uint64(front[t])
            a = (-lab[p]) >> 1
            lab[p] = a
            pend = -(2 * a + npar)
            nn = _reach(lab, p - one, pend, npar, nxt, nn)
            nn = _reach(lab, p + one, pend, npar, nxt, nn)
            nn = _reach(lab, p - wpu, pend, npar, nxt, nn)
            nn = _reach(lab, p + wpu, pend, npar, nxt, nn)
        front, nxt = nxt, front
        nf = nn
        parity = npar


@numba.njit(**JIT, inline="always")
def _key(v):
    """``v - 1`` for a label v >= 1, >= 2**31 - 1 for 0 and every negative code (int64,
    branch-free); ``_OPEN`` and up keep their order after every label."""
    return (np.int64(v) - 1) & 0xFFFFFFFF


@numba.njit(**JIT, inline="always")
def _min_label(a, b, c, d):
    """Smallest positive of four values (2**31 or more when none is), branch-free."""
    return min(min(_key(a), _key(b)), min(_key(c), _key(d))) + 1


@numba.njit(**JIT)
def _raster_ordered(cc, h, w):
    """Whether the labels of padded ``cc`` first appear in raster order as 1, 2, 3, ...
    (OpenCV's single- and multi-threaded labelling give that order; checked, not assumed)."""
    wp = w + 2
    mx = 0
    for i in range(1, h + 1):
        c = cc[i * wp : (i + 1) * wp]
        rm = 0
        for j in range(1, w + 1):  # row maximum first: most rows start no new label
            rm = max(rm, c[j])
        if rm > mx:
            for j in range(1, w + 1):
                x = c[j]
                if x > mx:
                    if x != mx + 1:
                        return False
                    mx = x
    return True


@numba.njit(**JIT)
def _canonicalize(cc, ncc, h, w):
    """Renumber the labels of padded ``cc`` in place to 1..ncc-1 in raster order of first pixel."""
    wp = w + 2
    canon = np.zeros(ncc, np.int32)
    m = 0
    for i in range(1, h + 1):
        c = cc[i * wp : (i + 1) * wp]
        for j in range(1, w + 1):
            x = c[j]
            k = canon[x]
            if (k == 0) & (x != 0):
                m += 1
                canon[x] = m
                k = m
            c[j] = k


@numba.njit(**JIT)
def _grow_round(src, dst, h, w):
    """One synchronous growth round, ``src`` -> ``dst`` (padded, ring 0): an open pixel
    (>= ``_OPEN``) next to labelled pixels (1 .. ``_OPEN`` - 1) takes the smallest of their
    labels. Vectorisable: no branch, no write into the array being read. Returns how many
    stay open and how many were claimed."""
    wp = w + 2
    left = 0
    took = 0
    for i in range(1, h + 1):
        row = i * wp
        up = src[row - wp : row]
        c = src[row : row + wp]
        dn = src[row + wp : row + 2 * wp]
        o = dst[row : row + wp]
        for j in range(1, w + 1):
            y = c[j]
            best = min(_min_label(c[j - 1], c[j + 1], up[j], dn[j]), _OPEN)
            op = np.int64(y >= _OPEN)
            hit = op & np.int64(best < _OPEN)
            o[j] = y + hit * (best - y)
            left += op - hit
            took += hit
    return left, took


@numba.njit(**JIT)
def _grow(lab, buf, h, w):
    """Breadth-first growth of the labels into the open pixels, to the end; ties in a round
    go to the smaller label. Synchronous rounds ``lab`` <-> ``buf`` (both padded, ring 0)
    while each claims many pixels, then a list-based search from the pixels the last round
    claimed. Returns (the array holding the result, the other one)."""
    src, dst = lab, buf
    npx = h * w
    while True:
        left, took = _grow_round(src, dst, h, w)
        src, dst = dst, src  # src: newest
        if left == 0 or took == 0:
            return src, dst
        if took * 32 < npx:  # a round now costs more than the claims
            break
    wp = w + 2
    front = np.empty(npx, np.int32)
    nf = 0
    for i in range(1, h + 1):
        row = i * wp
        c = src[row : row + wp]
        prev = dst[row : row + wp]
        for j in range(1, w + 1):
            if prev[j] >= _OPEN and c[j] < _OPEN:  # claimed by the last round
                c[j] = -(2 * c[j] + 1)
                front[nf] = row + j
                nf += 1
    _bfs(src, front, nf, np.empty(npx, np.int32), wp, 1)
    return src, dst


@numba.njit(**JIT)
def _fill_radius_kernel(cc, ncc, opening, free, out, buf, h, w, base, keep_mode):
    """One radius: seed components ``cc`` grown into the opening; kept fills -> ``out``, off ``free``.

    ``cc`` and ``buf`` (padded, ring 0) are scratch: 0 blocked, seed rank 1..m (raster order
    of first pixel), ``_OPEN`` on the band (opening minus seeds) until a round claims it.
    The breadth-first growth runs as synchronous whole-image rounds (a pixel claimed in round
    t takes the smallest label among its neighbours labelled by round t - 1, exactly the
    breadth-first rule); a band pixel is at most max(|dy| + |dx|) over the ball from its
    seed, so r = 1, 2, 3 take 1, 3, 4 rounds. Row passes index row views from 1 (no negative
    index, so Numba adds no wraparound code) and keep branches out of the pixel loop.
    """
    wp = w + 2
    if not _raster_ordered(cc, h, w):
        _canonicalize(cc, ncc, h, w)
    m = ncc - 1  # seed ranks 1..m are now the labels themselves
    # round 1 straight from the seeds: cc -> buf
    left = 0
    for i in range(1, h + 1):
        row = i * wp
        up = cc[row - wp : row]
        c = cc[row : row + wp]
        dn = cc[row + wp : row + 2 * wp]
        op = opening[row : row + wp]
        o = buf[row : row + wp]
        for j in range(1, w + 1):
            x = c[j]
            best = min(_min_label(c[j - 1], c[j + 1], up[j], dn[j]), _OPEN)
            isb = np.int64(x == 0) & np.int64(op[j] != 0)  # in the image, opening <= free
            o[j] = x + isb * best
            left += isb & np.int64(best == _OPEN)
    src = buf if left == 0 else _grow(buf, cc, h, w)[0]
    if keep_mode == 0:  # keep all
        kept = m
        for i in range(1, h + 1):
            row = i * wp
            c = src[row : row + wp]
            f = free[row : row + wp]
            ot = out[row : row + wp]
            for j in range(1, w + 1):
                k = c[j]
                s = np.int32(k != 0) & np.int32(k != _OPEN)
                ot[j] += s * (base + k)  # a fill pixel is free, so its output is still 0
                f[j] -= s
        return kept
    # size filter: 1 keep the largest (and ties), 2 keep those >= the mean
    n2 = m + 2
    sizes2 = np.zeros(2 * n2, np.int64)  # even/odd columns: no read-after-write chain
    for i in range(1, h + 1):
        c = src[i * wp : (i + 1) * wp]
        for j in range(1, w + 1):
            k = c[j]
            sizes2[(j & 1) * n2 + k * (k <= m)] += 1
    sizes = sizes2[:n2] + sizes2[n2:]
    total = 0
    big = 0
    for k in range(1, m + 1):
        total += sizes[k]
        big = max(big, sizes[k])
    newid = np.zeros(m + 1, np.int32)
    kept = 0
    last = 0
    for k in range(1, m + 1):
        if (keep_mode == 1 and sizes[k] == big) or (keep_mode == 2 and sizes[k] * m >= total):
            kept += 1
            newid[k] = base + kept
            last = k
    if kept == 1:  # the usual "max": one comparison, no gather
        for i in range(1, h + 1):
            row = i * wp
            c = src[row : row + wp]
            f = free[row : row + wp]
            ot = out[row : row + wp]
            for j in range(1, w + 1):
                s = np.int32(c[j] == last)
                ot[j] += s * (base + 1)
                f[j] -= s
        return kept
    for i in range(1, h + 1):
        row = i * wp
        c = src[row : row + wp]
        f = free[row : row + wp]
        ot = out[row : row + wp]
        for j in range(1, w + 1):
            k = c[j]
            nid = newid[k * (k <= m)]
            s = np.int32(nid > 0)
            ot[j] += nid
            f[j] -= s
    return kept


@numba.njit(**JIT)
def _leftover_kernel(cc, ncc, out, h, w, base):
    """Leftover components ``cc`` -> labels base+1.. in raster order of first pixel."""
    wp = w + 2
    if not _raster_ordered(cc, h, w):
        _canonicalize(cc, ncc, h, w)
    for i in range(1, h + 1):
        row = i * wp
        c = cc[row : row + wp]
        ot = out[row : row + wp]
        for j in range(1, w + 1):
            x = c[j]
            ot[j] += np.int32(x != 0) * (base + x)  # leftover pixels are still 0
    return ncc - 1


@numba.njit(**JIT)
def _finish_kernel(lab, buf, n, h, w, assign, a_min, a_lone, a_thin):
    """Edge assignment, sliver dissolving, renumbering. ``lab`` (provisional labels) and
    ``buf`` are padded with ring 0 and are scratch. Open pixels are coded ``_OPEN`` plus
    their original label, so stuck slivers keep theirs; 0 is never open and never a source."""
    wp = w + 2
    n2 = n + 2
    # pass 1: areas and inner pixels (a free pixel whose 4-neighbours are all its own) on the
    # provisional labels: per-pixel inner flags in a vectorisable pass, then one histogram
    # counting 1 + flag * 2**32 per pixel (low half: area, high half: inner pixels), split over
    # even and odd columns so that a run of one label is no chain of read-after-write
    flag = np.empty(lab.size, np.uint8)
    for i in range(1, h + 1):
        row = i * wp
        up = lab[row - wp : row]
        c = lab[row : row + wp]
        dn = lab[row + wp : row + 2 * wp]
        fl = flag[row : row + wp]
        for j in range(1, w + 1):
            a = c[j]
            fl[j] = ((c[j - 1] ^ a) | (c[j + 1] ^ a) | (up[j] ^ a) | (dn[j] ^ a)) == 0
    acc2 = np.zeros(2 * n2, np.int64)
    for i in range(1, h + 1):
        row = i * wp
        c = lab[row : row + wp]
        fl = flag[row : row + wp]
        for j in range(1, w + 1):
            acc2[(j & 1) * n2 + c[j]] += 1 + (np.int64(fl[j]) << 32)
    acc = acc2[:n2] + acc2[n2:]
    area = acc & 0xFFFFFFFF
    inner = (acc >> 32) > 0
    if assign:  # edges become open, then the regions grow over them
        for i in range(1, h + 1):
            c = lab[i * wp : (i + 1) * wp]
            for j in range(1, w + 1):
                a = c[j]
                c[j] = a + (a == 0) * _OPEN
        lab, buf = _grow(lab, buf, h, w)
    # pass 2: neighbours, only of the regions whose fate depends on them. With the edges
    # assigned, the labels cover the connected image, so when n >= 2 every region has a
    # neighbour and only the count (one or more) matters, for 50 <= area < 250 with an inner
    # pixel; without, any region under 500 may have none. st: 0 none yet, b > 0 exactly one
    # (b), -1 two or more or not tracked.
    need = np.zeros(n2, np.bool_)  # index 0 (ring, unassigned edges) stays False
    nneed = 0
    for a in range(1, n + 1):
        x = area[a]
        if (assign and a_min <= x < a_lone and inner[a]) or (not assign and x < a_thin):
            need[a] = True
            nneed += 1
    st = np.zeros(n2, np.int32)
    if nneed > 0:
        for a in range(1, n + 1):
            if not need[a]:
                st[a] = -1
        for i in range(1, h + 1):
            row = i * wp
            c = lab[row : row + wp]
            dn = lab[row + wp : row + 2 * wp]
            for j in range(1, w + 1):
                a = c[j]
                if not (need[a] | need[c[j + 1]] | need[dn[j]]):
                    continue
                if a == 0:
                    continue
                for k in range(2):
                    b = c[j + 1] if k == 0 else dn[j]
                    if b == a or b == 0:
                        continue
                    x = st[a]
                    if x >= 0 and x != b:
                        st[a] = b if x == 0 else -1
                    x = st[b]
                    if x >= 0 and x != a:
                        st[b] = a if x == 0 else -1
    sliver = np.zeros(n2, np.int32)  # 1 for a sliver; index 0 stays 0
    nsl = 0
    for a in range(1, n + 1):
        x = area[a]
        has = st[a] != 0 if need[a] else n >= 2  # (not assign: every x < a_thin is tracked)
        sl = x < a_thin and has and (x < a_min or (x < a_lone and st[a] > 0) or not inner[a])
        sliver[a] = sl
        nsl += sl
    if nsl > 0:
        # pass 3: open the slivers (keeping their label), grow the other regions into them
        for i in range(1, h + 1):
            c = lab[i * wp : (i + 1) * wp]
            for j in range(1, w + 1):
                a = c[j]
                c[j] = a + sliver[a] * _OPEN
        lab, buf = _grow(lab, buf, h, w)
    # pass 4: renumber in raster order; a sliver cluster that no kept region reached (still
    # open) becomes one region with the label of its first pixel
    final = np.zeros(n2, np.int32)
    out = np.empty((h, w), np.int32)
    k = 0
    for i in range(h):
        row = (i + 1) * wp
        c = lab[row : row + wp]
        o = out[i]
        for j in range(w):
            a = c[j + 1]
            if a >= _OPEN:
                a -= _OPEN
                _flood(lab, row + j + 1, a, wp)
            f = final[a]
            if f == 0 and a != 0:
                k += 1
                final[a] = k
                f = k
            o[j] = f
    return out


@numba.njit(**JIT)
def _flood(lab, p0, a, wp):
    """Set the 4-connected open (>= ``_OPEN``) pixels around ``p0`` to label ``a``."""
    lab[p0] = a
    stack = [p0]
    while len(stack) > 0:
        p = stack.pop()
        for d in range(4):
            r = p - 1 if d == 0 else p + 1 if d == 1 else p - wp if d == 2 else p + wp
            if lab[r] >= _OPEN:
                lab[r] = a
                stack.append(r)
