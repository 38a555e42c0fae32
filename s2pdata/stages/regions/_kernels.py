"""Numba kernels of the trapped-ball fill; ``s2pdata.stages.regions`` validates and pads, these compute.

Images are passed flat and padded (row-major, width wp = w + 2); the 4-neighbours of p are p-1,
p+1 (same row) and p-wp, p+wp. What makes them fast (each was measured): whole-row passes index
row views from 1, so Numba emits no negative-index wraparound code and LLVM can vectorise them;
selects are written as arithmetic, because Numba compiles ``x if c else y`` to a branch that
mispredicts on noisy maps; a pass never reads a neighbour it has just written (that chains every
pixel to the last through memory); histograms alternate two counter arrays by column parity.

Pixel states (int32; in the spirit of scikit-image's flood fill, which names UNKNOWN, FILL and
BORDER), in the label arrays every growth works on:

* ``BLOCKED`` (0): an edge pixel not yet assigned, a pixel off the opening, or the padding ring;
  never open to a growth and never a source of one.
* a label ``1 .. OPEN - 1``: a region (a seed rank, a fill, a provisional or final region).
* ``OPEN`` and up: a pixel a growth may still claim; ``OPEN + a`` while the sliver it belonged
  to, label a, dissolves, so that a sliver cluster no region reaches keeps its label.
* ``PENDING`` codes ``-(2 * label + parity)`` < 0: claimed in the round in progress of the
  list-based search (``_bfs``); needs 2 * n + 1 < 2**31, hence ``MAX_PIXELS``.

Other named codes: ``KEEP_ALL``, ``KEEP_MAX``, ``KEEP_MEAN`` (the size filter of one radius);
``NO_NEIGHBOUR`` and ``MANY_NEIGHBOURS`` (the neighbour state of a region in the sliver rule,
between them the one neighbouring label).
"""

from __future__ import annotations

import numba
import numpy as np

from s2pdata._jit import JIT

BLOCKED = 0
OPEN = 1 << 30
MAX_PIXELS = 1 << 29
KEEP_ALL, KEEP_MAX, KEEP_MEAN = 0, 1, 2
NO_NEIGHBOUR, MANY_NEIGHBOURS = 0, -1
_WRITE_ALL, _WRITE_ONE, _WRITE_MAPPED = 0, 1, 2  # how _write_fills maps fills to output labels
_ROUND_SHARE = 32  # synchronous rounds while one claims at least 1/32 of the pixels, then a list search
_HIGH = 32  # _area_inner packs the inner-pixel count above bit 32 of an int64, the area below
_LOW32 = 0xFFFFFFFF


@numba.njit(**JIT, inline="always")
def _reach(lab, q, pend, npar, nxt, nn):
    """Pixel ``q`` seen from a front pixel whose label codes as ``pend`` for the next round:
    open -> claim it; claimed this round with a larger label -> take it. Branch-free (Numba
    compiles ``x if c else y`` to a branch, so selects are written as arithmetic)."""
    v = lab[q]
    claim = np.int32(v >= OPEN)
    take = claim | (np.int32(v < pend) & np.int32((v & 1) == npar))
    lab[q] = v + take * (pend - v)
    nxt[nn] = np.int32(q)
    return nn + claim


@numba.njit(**JIT)
def _bfs(lab, front, nf, nxt, wp, parity):
    """Breadth-first growth, one round per loop. ``front`` holds the ``nf`` pixels claimed in
    the last round, each pending as ``-(2 * label + parity)``; a pixel is open while its value
    is >= ``OPEN``. Each round finalises the front and lets every open 4-neighbour take the
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
    branch-free); ``OPEN`` and up keep their order after every label."""
    return (np.int64(v) - 1) & _LOW32


@numba.njit(**JIT, inline="always")
def _min_label(a, b, c, d):
    """Smallest positive of four values (2**31 or more when none is), branch-free."""
    return min(min(_key(a), _key(b)), min(_key(c), _key(d))) + 1


@numba.njit(**JIT, inline="always")
def _rows3(a, i, wp):
    """Row ``i`` of the padded flat image ``a`` and the rows above and below it, as views."""
    row = i * wp
    return a[row - wp : row], a[row : row + wp], a[row + wp : row + 2 * wp]


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
            if (k == 0) & (x != BLOCKED):  # k == 0: x not numbered yet
                m += 1
                canon[x] = m
                k = m
            c[j] = k


@numba.njit(**JIT)
def _grow_round(src, dst, h, w):
    """One synchronous growth round, ``src`` -> ``dst`` (padded, ring ``BLOCKED``): an open pixel
    (>= ``OPEN``) next to labelled pixels (1 .. ``OPEN`` - 1) takes the smallest of their
    labels. Vectorisable: no branch, no write into the array being read. Returns how many
    stay open and how many were claimed."""
    wp = w + 2
    left = 0
    took = 0
    for i in range(1, h + 1):
        up, c, dn = _rows3(src, i, wp)
        o = dst[i * wp : (i + 1) * wp]
        for j in range(1, w + 1):
            y = c[j]
            best = min(_min_label(c[j - 1], c[j + 1], up[j], dn[j]), OPEN)
            op = np.int64(y >= OPEN)
            hit = op & np.int64(best < OPEN)
            o[j] = y + hit * (best - y)
            left += op - hit
            took += hit
    return left, took


@numba.njit(**JIT)
def _grow(lab, buf, h, w):
    """Breadth-first growth of the labels into the open pixels, to the end; ties in a round
    go to the smaller label. Synchronous rounds ``lab`` <-> ``buf`` (both padded, ring ``BLOCKED``)
    while each claims many pixels, then a list-based search from the pixels the last round
    claimed. Returns (the array holding the result, the other one)."""
    src, dst = lab, buf
    npx = h * w
    while True:
        left, took = _grow_round(src, dst, h, w)
        src, dst = dst, src  # src: newest
        if left == 0 or took == 0:
            return src, dst
        if took * _ROUND_SHARE < npx:  # a round now costs more than the claims
            break
    wp = w + 2
    parity = 1  # any start: the list search alternates it per round
    front = np.empty(npx, np.int32)
    nf = 0
    for i in range(1, h + 1):
        row = i * wp
        c = src[row : row + wp]
        prev = dst[row : row + wp]
        for j in range(1, w + 1):
            if prev[j] >= OPEN and c[j] < OPEN:  # claimed by the last round
                c[j] = -(2 * c[j] + parity)  # PENDING
                front[nf] = row + j
                nf += 1
    _bfs(src, front, nf, np.empty(npx, np.int32), wp, parity)
    return src, dst


@numba.njit(**JIT)
def _seed_round(cc, opening, dst, h, w):
    """Round 1 of the re-growth, straight from the seeds ``cc`` into ``dst``: a band pixel (not
    a seed, in the opening) next to a seed takes the smallest seed label, the others become
    ``OPEN``. Returns how many band pixels stay open."""
    wp = w + 2
    left = 0
    for i in range(1, h + 1):
        up, c, dn = _rows3(cc, i, wp)
        op = opening[i * wp : (i + 1) * wp]
        o = dst[i * wp : (i + 1) * wp]
        for j in range(1, w + 1):
            x = c[j]
            best = min(_min_label(c[j - 1], c[j + 1], up[j], dn[j]), OPEN)
            isb = np.int64(x == BLOCKED) & np.int64(op[j] != 0)  # in the image, opening <= free
            o[j] = x + isb * best
            left += isb & np.int64(best == OPEN)
    return left


@numba.njit(**JIT)
def _fill_sizes(src, m, h, w):
    """``(m + 2,) int64`` pixel count per fill label 1..m of ``src`` (other codes count at 0)."""
    wp = w + 2
    n2 = m + 2
    sizes2 = np.zeros(2 * n2, np.int64)  # even/odd columns: no read-after-write chain
    for i in range(1, h + 1):
        c = src[i * wp : (i + 1) * wp]
        for j in range(1, w + 1):
            k = c[j]
            sizes2[(j & 1) * n2 + k * (k <= m)] += 1
    return sizes2[:n2] + sizes2[n2:]


@numba.njit(**JIT)
def _kept_fills(sizes, m, base, keep_mode):
    """Size filter: ``(newid, kept, last)`` with ``newid[k]`` the output label of fill k (0 when
    rejected), the number kept and the last kept fill. KEEP_MAX keeps the largest (and ties),
    KEEP_MEAN those at least the mean size."""
    total = 0
    big = 0
    for k in range(1, m + 1):
        total += sizes[k]
        big = max(big, sizes[k])
    newid = np.zeros(m + 1, np.int32)
    kept = 0
    last = 0
    for k in range(1, m + 1):
        if (keep_mode == KEEP_MAX and sizes[k] == big) or (keep_mode == KEEP_MEAN and sizes[k] * m >= total):
            kept += 1
            newid[k] = base + kept
            last = k
    return newid, kept, last


@numba.njit(**JIT)
def _write_fills(src, free, out, h, w, base, m, newid, last, how):
    """Kept fills of ``src`` -> labels in ``out``, taken off ``free`` (a fill pixel is free, so
    its output is still 0). ``how``: _WRITE_ALL (fill k -> base + k), _WRITE_ONE (only fill
    ``last``, -> base + 1: one comparison, no gather) or _WRITE_MAPPED (fill k -> ``newid[k]``).
    The choice is made per row so each pixel loop stays branch-free and vectorisable."""
    wp = w + 2
    for i in range(1, h + 1):
        row = i * wp
        c = src[row : row + wp]
        f = free[row : row + wp]
        ot = out[row : row + wp]
        if how == _WRITE_ALL:
            for j in range(1, w + 1):
                k = c[j]
                s = np.int32(k != BLOCKED) & np.int32(k != OPEN)
                ot[j] += s * (base + k)
                f[j] -= s
        elif how == _WRITE_ONE:
            for j in range(1, w + 1):
                s = np.int32(c[j] == last)
                ot[j] += s * (base + 1)
                f[j] -= s
        else:
            for j in range(1, w + 1):
                k = c[j]
                nid = newid[k * (k <= m)]
                ot[j] += nid
                f[j] -= np.int32(nid > 0)


@numba.njit(**JIT)
def _fill_radius_kernel(cc, ncc, opening, free, out, buf, h, w, base, keep_mode):
    """One radius: seed components ``cc`` grown into the opening; kept fills -> ``out``, off ``free``.

    ``cc`` and ``buf`` (padded, ring ``BLOCKED``) are scratch: ``BLOCKED`` off the opening, seed
    rank 1..m (raster order of first pixel), ``OPEN`` on the band (opening minus seeds) until a
    round claims it. The breadth-first growth runs as synchronous whole-image rounds (a pixel
    claimed in round t takes the smallest label among its neighbours labelled by round t - 1,
    exactly the breadth-first rule); a band pixel is at most max(|dy| + |dx|) over the ball
    from its seed, so r = 1, 2, 3 take 1, 3, 4 rounds. ``keep_mode``: KEEP_ALL, KEEP_MAX or
    KEEP_MEAN. Returns the number of fills kept.
    """
    if not _raster_ordered(cc, h, w):
        _canonicalize(cc, ncc, h, w)
    m = ncc - 1  # seed ranks 1..m are now the labels themselves
    left = _seed_round(cc, opening, buf, h, w)
    src = buf if left == 0 else _grow(buf, cc, h, w)[0]
    empty = np.zeros(1, np.int32)
    if keep_mode == KEEP_ALL:
        _write_fills(src, free, out, h, w, base, m, empty, 0, _WRITE_ALL)
        return m
    newid, kept, last = _kept_fills(_fill_sizes(src, m, h, w), m, base, keep_mode)
    if kept == 1:  # the usual "max"
        _write_fills(src, free, out, h, w, base, m, empty, last, _WRITE_ONE)
    else:
        _write_fills(src, free, out, h, w, base, m, newid, 0, _WRITE_MAPPED)
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
            ot[j] += np.int32(x != BLOCKED) * (base + x)  # leftover pixels are still 0 in out
    return ncc - 1


@numba.njit(**JIT)
def _area_inner(lab, n, h, w):
    """Per provisional label 0..n+1: ``(area, inner)``, inner True when the region has a pixel
    whose four 4-neighbours are all its own. Per-pixel inner flags in a vectorisable pass, then
    one histogram counting 1 + flag * 2**32 per pixel (low half: area, high half: inner pixels),
    split over even and odd columns so that a run of one label is no chain of read-after-write."""
    wp = w + 2
    n2 = n + 2
    flag = np.empty(lab.size, np.uint8)
    for i in range(1, h + 1):
        up, c, dn = _rows3(lab, i, wp)
        fl = flag[i * wp : (i + 1) * wp]
        for j in range(1, w + 1):
            a = c[j]
            fl[j] = ((c[j - 1] ^ a) | (c[j + 1] ^ a) | (up[j] ^ a) | (dn[j] ^ a)) == 0
    acc2 = np.zeros(2 * n2, np.int64)
    for i in range(1, h + 1):
        row = i * wp
        c = lab[row : row + wp]
        fl = flag[row : row + wp]
        for j in range(1, w + 1):
            acc2[(j & 1) * n2 + c[j]] += 1 + (np.int64(fl[j]) << _HIGH)
    acc = acc2[:n2] + acc2[n2:]
    return acc & _LOW32, (acc >> _HIGH) > 0


@numba.njit(**JIT)
def _open_pixels(lab, opens, h, w):
    """Open pixels for a growth, keeping their label: ``opens`` None opens the ``BLOCKED``
    (edge) pixels, as ``OPEN``; an array opens every pixel of a label a with ``opens[a]`` 1,
    as ``OPEN + a``."""
    wp = w + 2
    for i in range(1, h + 1):
        c = lab[i * wp : (i + 1) * wp]
        if opens is None:
            for j in range(1, w + 1):
                a = c[j]
                c[j] = a + (a == BLOCKED) * OPEN
        else:
            for j in range(1, w + 1):
                a = c[j]
                c[j] = a + opens[a] * OPEN


@numba.njit(**JIT)
def _needs_neighbours(area, inner, n, assign, a_min, a_lone, a_thin):
    """Which regions' fate depends on their neighbours. With the edges assigned, the labels cover
    the connected image, so when n >= 2 every region has a neighbour and only the count (one or
    more) matters, for a_min <= area < a_lone with an inner pixel; without, any region under
    a_thin may have none. Index 0 (ring, unassigned edges) stays False."""
    need = np.zeros(n + 2, np.bool_)
    for a in range(1, n + 1):
        x = area[a]
        need[a] = (assign and a_min <= x < a_lone and inner[a]) or (not assign and x < a_thin)
    return need


@numba.njit(**JIT, inline="always")
def _note_neighbour(st, a, b):
    """Record b as a neighbour of a: ``NO_NEIGHBOUR`` -> b; another b -> ``MANY_NEIGHBOURS``."""
    x = st[a]
    if x >= 0 and x != b:
        st[a] = b if x == NO_NEIGHBOUR else MANY_NEIGHBOURS


@numba.njit(**JIT)
def _neighbour_states(lab, need, n, h, w):
    """Per label: ``NO_NEIGHBOUR``, the one neighbouring label b > 0, or ``MANY_NEIGHBOURS``
    (also for labels not in ``need``, which are not tracked). Neighbours are 4-adjacent pixels
    with another label > 0."""
    wp = w + 2
    st = np.zeros(n + 2, np.int32)
    for a in range(1, n + 1):
        if not need[a]:
            st[a] = MANY_NEIGHBOURS
    for i in range(1, h + 1):
        _, c, dn = _rows3(lab, i, wp)
        for j in range(1, w + 1):
            a = c[j]
            if not (need[a] | need[c[j + 1]] | need[dn[j]]):
                continue
            if a == BLOCKED:
                continue
            for k in range(2):
                b = c[j + 1] if k == 0 else dn[j]
                if b == a or b == BLOCKED:
                    continue
                _note_neighbour(st, a, b)
                _note_neighbour(st, b, a)
    return st


@numba.njit(**JIT)
def _slivers(area, inner, need, st, n, a_min, a_lone, a_thin):
    """``(n + 2,) int32`` 1 for a sliver (index 0 stays 0) and their count: a region with a
    neighbour and area < a_min, or < a_lone with a single neighbour, or < a_thin with no inner
    pixel."""
    sliver = np.zeros(n + 2, np.int32)
    nsl = 0
    for a in range(1, n + 1):
        x = area[a]
        has = st[a] != NO_NEIGHBOUR if need[a] else n >= 2  # (not assign: every x < a_thin is tracked)
        sl = x < a_thin and has and (x < a_min or (x < a_lone and st[a] > 0) or not inner[a])
        sliver[a] = sl
        nsl += sl
    return sliver, nsl


@numba.njit(**JIT)
def _renumber(lab, n, h, w):
    """Padded labels -> ``(h, w) int32`` 1..K in raster order of first pixel; a sliver cluster
    that no kept region reached (still open) becomes one region with the label of its first
    pixel."""
    wp = w + 2
    final = np.zeros(n + 2, np.int32)
    out = np.empty((h, w), np.int32)
    k = 0
    for i in range(h):
        row = (i + 1) * wp
        c = lab[row : row + wp]
        o = out[i]
        for j in range(w):
            a = c[j + 1]
            if a >= OPEN:
                a -= OPEN
                _flood(lab, row + j + 1, a, wp)
            f = final[a]
            if f == 0 and a != BLOCKED:
                k += 1
                final[a] = k
                f = k
            o[j] = f
    return out


@numba.njit(**JIT)
def _finish_kernel(lab, buf, n, h, w, assign, a_min, a_lone, a_thin):
    """Edge assignment, sliver dissolving, renumbering. ``lab`` (provisional labels) and
    ``buf`` are padded with ring ``BLOCKED`` and are scratch. Opened pixels are coded ``OPEN``
    plus their original label, so stuck slivers keep theirs; ``BLOCKED`` is never a source."""
    # pass 1: areas and inner pixels on the provisional labels
    area, inner = _area_inner(lab, n, h, w)
    if assign:  # edges become open, then the regions grow over them
        _open_pixels(lab, None, h, w)
        lab, buf = _grow(lab, buf, h, w)
    # pass 2: neighbours, only of the regions whose fate depends on them
    need = _needs_neighbours(area, inner, n, assign, a_min, a_lone, a_thin)
    if need.any():
        st = _neighbour_states(lab, need, n, h, w)
    else:
        st = np.zeros(n + 2, np.int32)
    sliver, nsl = _slivers(area, inner, need, st, n, a_min, a_lone, a_thin)
    if nsl > 0:  # pass 3: open the slivers (keeping their label), grow the other regions into them
        _open_pixels(lab, sliver, h, w)
        lab, buf = _grow(lab, buf, h, w)
    return _renumber(lab, n, h, w)  # pass 4


@numba.njit(**JIT)
def _flood(lab, p0, a, wp):
    """Set the 4-connected open (>= ``OPEN``) pixels around ``p0`` to label ``a``."""
    lab[p0] = a
    stack = [p0]
    while len(stack) > 0:
        p = stack.pop()
        for d in range(4):
            r = p - 1 if d == 0 else p + 1 if d == 1 else p - wp if d == 2 else p + wp
            if lab[r] >= OPEN:
                lab[r] = a
                stack.append(r)
