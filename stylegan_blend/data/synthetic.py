"""Two procedural face domains, "photo" and "toon", for the demo and tests (no dataset can be downloaded).

Both domains draw the *same* face layout from the random stream first (`sample_geometry`: head position,
size, tilt, hair style, eye spacing, mouth, skin tone...) and only then their own rendering randomness.
So image i of each domain has the same structure and differs in rendering: shaded skin, strand-textured
hair, small eyes, soft light and sensor noise ("photo") versus flat fills, dark outlines, big
highlighted eyes and saturated hair ("toon"). That is the split StyleGAN's layer swap exploits: low-res
blocks carry layout, high-res blocks carry rendering, so a swap between a photo model and a toon model
fine-tuned from it gives a meaningful blend.

Shapes are signed distance fields (negative inside) on a supersampled canvas in [-1, 1]^2 (y down),
composited with a one-canvas-pixel ramp and box-downsampled, so edges are anti-aliased from 16 px up.
"""
from __future__ import annotations

import colorsys
import dataclasses
import math
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from ..errors import UserError
from .folder import (
    Entry,
    PrepareReport,
    check_resolution,
    check_val_fraction,
    finish,
    read_manifest,
    remove_stale_temps,
    save_png,
    sha256_bytes,
)

DOMAINS = ("photo", "toon")

_PHOTO_HAIR = [(0.07, 0.06, 0.06), (0.22, 0.14, 0.09), (0.40, 0.26, 0.15), (0.76, 0.61, 0.38),
               (0.50, 0.21, 0.11), (0.58, 0.57, 0.56)]
_TOON_HAIR = [(1.00, 0.45, 0.70), (0.25, 0.50, 1.00), (0.60, 0.33, 0.92), (0.25, 0.80, 0.50),
              (1.00, 0.55, 0.12), (1.00, 0.86, 0.25), (0.18, 0.18, 0.40), (0.92, 0.16, 0.22)]
_PHOTO_IRIS = [(0.30, 0.18, 0.10), (0.20, 0.12, 0.07), (0.28, 0.45, 0.62), (0.33, 0.45, 0.30),
               (0.45, 0.38, 0.22)]
_PHOTO_SKIN = [(0.96, 0.80, 0.69), (0.82, 0.62, 0.48), (0.47, 0.32, 0.23)]
_TOON_SKIN = [(1.00, 0.89, 0.80), (0.96, 0.76, 0.62), (0.70, 0.49, 0.36)]
_INK = np.array([0.10, 0.06, 0.09], np.float32)


@dataclasses.dataclass(frozen=True)
class FaceGeometry:
    """Layout shared by both domains, in canvas units ([-1, 1]^2, y down); face-relative where noted."""
    cx: float
    cy: float
    tilt: float          # head roll in radians
    face_w: float        # half width of the face ellipse
    face_h: float        # half height
    chin: float          # how much the lower face tapers
    hair_style: int      # 0 short, 1 bob, 2 long
    hair_top: float      # hair volume above the forehead
    hair_side: float     # hair width / face width
    hair_len: float      # long hair length (x face_h)
    fringe: float        # fringe line height (x face_h, from the centre, negative = up)
    fringe_waves: int
    fringe_phase: float
    eye_y: float         # x face_h, from the centre
    eye_dx: float        # x face_w
    eye_size: float      # x face_w
    brow_tilt: float
    nose_y: float        # x face_h
    mouth_y: float       # x face_h
    mouth_w: float       # x face_w
    smile: float
    mouth_open: float
    skin: float          # 0 light .. 1 dark
    hair_colour: float   # picks from the domain's palette
    iris_colour: float
    cloth_hue: float
    background_hue: float
    light: float         # light from the left (-1) .. right (+1)
    shoulders: float     # x face_w


def sample_geometry(rng: np.random.Generator) -> FaceGeometry:
    """A fixed number of draws in a fixed order, whatever the domain: same stream -> same layout."""
    u = rng.uniform
    face_w = u(0.44, 0.54)  # large enough that eyes and mouth span whole pixels at 32 px
    return FaceGeometry(
        cx=u(-0.15, 0.15), cy=u(-0.10, 0.12), tilt=u(-0.15, 0.15), face_w=face_w,
        face_h=face_w * u(1.18, 1.34), chin=u(0.15, 0.45), hair_style=int(u(0, 3)),
        hair_top=u(0.04, 0.14), hair_side=u(1.08, 1.22), hair_len=u(0.3, 0.9), fringe=-u(0.42, 0.72),
        fringe_waves=int(u(3, 7)), fringe_phase=u(0, 2 * math.pi), eye_y=u(-0.10, 0.05),
        eye_dx=u(0.36, 0.47), eye_size=u(0.9, 1.1), brow_tilt=u(-0.2, 0.2), nose_y=u(0.24, 0.34),
        mouth_y=u(0.50, 0.62), mouth_w=u(0.22, 0.36), smile=u(-0.3, 1.0), mouth_open=u(0, 1),
        skin=u(0, 1), hair_colour=u(0, 1), iris_colour=u(0, 1), cloth_hue=u(0, 1),
        background_hue=u(0, 1), light=u(-1, 1), shoulders=u(1.7, 2.2))


def render_face(rng: np.random.Generator, domain: str, resolution: int) -> np.ndarray:
    """One face as uint8 HxWx3. The layout comes from the first draws of `rng`, so two generators with
    the same seed give the same layout in either domain."""
    if domain not in DOMAINS:
        raise UserError(f"domain {domain!r}: expected one of {', '.join(DOMAINS)}")
    check_resolution(resolution)
    geometry = sample_geometry(rng)
    return _Painter(geometry, domain, resolution, rng).render()


# ---------------------------------------------------------------------------------------------- shapes


def _ellipse(u, v, a, b):
    """Approximate signed distance to an axis-aligned ellipse (exact on the axes, good near the edge)."""
    k0 = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    k1 = np.sqrt((u / a ** 2) ** 2 + (v / b ** 2) ** 2) + 1e-9
    return k0 * (k0 - 1.0) / k1


def _band(v, curve, half, u, half_len):
    """A stroke of half thickness `half` along v = curve(u), |u| < half_len."""
    return np.maximum(np.abs(v - curve) - half, np.abs(u) - half_len)


def _lerp_palette(palette, t):
    """Piecewise-linear colour along a palette (skin tones)."""
    t = float(np.clip(t, 0, 1)) * (len(palette) - 1)
    i = min(int(t), len(palette) - 2)
    a, b = np.array(palette[i]), np.array(palette[i + 1])
    return ((1 - (t - i)) * a + (t - i) * b).astype(np.float32)


def _pick(palette, t):
    return np.array(palette[min(int(t * len(palette)), len(palette) - 1)], np.float32)


def _hsv(h, s, v):
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32)


class _Painter:
    """Paints one face back to front on a supersampled canvas; `photo` and `toon` differ only here."""

    def __init__(self, g: FaceGeometry, domain: str, resolution: int, rng: np.random.Generator):
        self.g, self.domain, self.res, self.rng = g, domain, resolution, rng
        self.ss = 2
        n = resolution * self.ss
        self.n = n
        self.px = 2.0 / n  # one canvas pixel in canvas units
        coords = (np.arange(n, dtype=np.float32) + 0.5) / n * 2 - 1
        self.X, self.Y = np.meshgrid(coords, coords)
        c, s = math.cos(g.tilt), math.sin(g.tilt)
        dx, dy = self.X - g.cx, self.Y - g.cy
        self.u, self.v = c * dx + s * dy, -s * dx + c * dy  # face frame, rolls with the head
        self.canvas = np.zeros((n, n, 3), np.float32)
        self.toon = domain == "toon"
        self.strands = None
        # toon ink: about a third of an output pixel either side of an edge, never thinner than 1% of the image
        self.ink = max(0.32 * 2.0 / resolution, 0.010)

    # -- compositing
    def cover(self, d, soft=1.0):
        return np.clip(0.5 - d / (soft * self.px), 0.0, 1.0)

    def paint(self, mask, colour):
        """Blend `colour` (RGB or an image) over the canvas with coverage `mask`, only where mask > 0."""
        rows, cols = np.flatnonzero(mask.max(axis=1) > 0), np.flatnonzero(mask.max(axis=0) > 0)
        if rows.size == 0:
            return
        box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        region = self.canvas[box]
        region += mask[box][..., None] * ((colour[box] if np.ndim(colour) == 3 else colour) - region)

    def darken(self, mask, amount):
        self.paint(amount * mask, np.zeros(3, np.float32))

    def fill(self, d, colour, outline=True):
        """Flat or textured fill; in toon, a dark outline on top."""
        self.paint(self.cover(d, 1.0 if self.toon else 1.5), colour)
        if self.toon and outline:
            self.paint(self.cover(np.abs(d) - self.ink), _INK)

    def smooth_noise(self, sigma):
        n = gaussian_filter(self.rng.standard_normal((self.n, self.n)).astype(np.float32),
                            [s * self.n for s in np.broadcast_to(sigma, 2)])
        return n / (n.std() + 1e-8)

    # -- the face, back to front
    def render(self) -> np.ndarray:
        g = self.g
        self.skin = _lerp_palette(_TOON_SKIN if self.toon else _PHOTO_SKIN, g.skin)
        self.hair = _pick(_TOON_HAIR if self.toon else _PHOTO_HAIR, g.hair_colour)
        light = np.array([g.light, -0.6, 1.0], np.float32)
        self.light = light / np.linalg.norm(light)
        self.background()
        self.clothes()
        self.back_hair()
        self.neck_and_ears()
        self.face()
        self.front_hair()
        self.brows()
        self.eyes()
        self.nose()
        self.mouth()
        img = self.canvas
        if not self.toon:
            img = gaussian_filter(img, (0.5 * self.ss, 0.5 * self.ss, 0))  # soft optics
        r, ss = self.res, self.ss
        img = img.reshape(r, ss, r, ss, 3).mean(axis=(1, 3))
        if not self.toon:
            img = img + self.rng.normal(0, 0.012, img.shape).astype(np.float32)  # sensor noise
        return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)

    def shade(self, nx, ny, ambient=0.5, strength=0.55):
        """Lambert on a pseudo-3D bulge with normal (nx, ny, sqrt(1 - nx^2 - ny^2))."""
        nz = np.sqrt(np.clip(1 - nx ** 2 - ny ** 2, 0.02, 1))
        lam = np.clip(nx * self.light[0] + ny * self.light[1] + nz * self.light[2], 0, 1)
        return (ambient + strength * lam)[..., None]

    def background(self):
        g = self.g
        if self.toon:
            self.canvas[:] = _hsv(g.background_hue, 0.30, 0.97)
            return
        top, bottom = _hsv(g.background_hue, 0.18, 0.80), _hsv(g.background_hue, 0.25, 0.45)
        t = ((self.Y + 1) / 2)[..., None]
        self.canvas[:] = (1 - t) * top + t * bottom
        self.canvas *= 1 + 0.05 * self.smooth_noise(0.10)[..., None]  # out-of-focus clutter

    def clothes(self):
        g = self.g
        dx, dy = self.X - g.cx * 0.6, self.Y - (g.cy + g.face_h + 0.55)
        d = np.maximum(_ellipse(dx, dy, g.face_w * g.shoulders, 0.58),
                       -_ellipse(self.X - g.cx, self.Y - (g.cy + g.face_h + 0.02), g.face_w * 0.45, 0.12))
        if self.toon:
            self.fill(d, _hsv(g.cloth_hue, 0.75, 0.90))
        else:
            col = _hsv(g.cloth_hue, 0.40, 0.55) * self.shade(dx / (g.face_w * g.shoulders), dy / 0.58 * 0.5)
            self.fill(d, col * (1 + 0.06 * self.smooth_noise((0.004, 0.02))[..., None]))

    def hair_cap(self):
        g, h = self.g, self.g.face_h
        return _ellipse(self.u, self.v + 0.1 * h, g.face_w * g.hair_side, 0.9 * h + g.hair_top)

    def hair_colour(self, d):
        """Photo hair: strand texture (noise stretched along the fall of the hair) and a sheen."""
        if self.toon:
            return self.hair
        g, h = self.g, self.g.face_h
        if self.strands is None:  # one strand texture per head: back and front hair must match
            self.strands = self.smooth_noise((0.03, 0.003))
        strands = self.strands
        sheen = np.exp(-((self.v + 0.75 * h) / (0.08 * h)) ** 2) * (np.abs(self.u) < g.face_w * 0.7)
        tone = 0.8 + 0.22 * strands + 0.35 * sheen + 0.15 * np.clip(-d / 0.1, 0, 1)
        return self.hair * tone[..., None] + 0.04 * sheen[..., None]

    def back_hair(self):
        g, h, w = self.g, self.g.face_h, self.g.face_w
        cap = self.hair_cap()
        if g.hair_style == 0:
            d = np.maximum(cap, self.v - (g.eye_y + 0.15) * h)
        elif g.hair_style == 1:
            d = np.maximum(cap, self.v - (g.mouth_y + 0.12) * h)
        else:
            length = (1.1 + g.hair_len) * h
            curtains = np.maximum.reduce([np.abs(self.u) - w * g.hair_side, w * 0.55 - np.abs(self.u),
                                          self.v - length, -self.v])
            d = np.minimum(np.maximum(cap, self.v - length), curtains)
        self.fill(d, self.hair_colour(d) * (1.0 if self.toon else 0.7))

    def neck_and_ears(self):
        g, h, w = self.g, self.g.face_h, self.g.face_w
        neck = np.maximum(np.abs(self.X - g.cx) - w * 0.42, (g.cy + 0.3 * h) - self.Y)
        self.fill(neck, self.skin * (0.80 if self.toon else self.shade(0, 0.3) * 0.75))
        for side in (-1, 1):
            ear = _ellipse(self.u - side * w * 0.97, self.v - (g.eye_y + 0.12) * h, w * 0.13, h * 0.17)
            self.fill(ear, self.skin * (0.95 if self.toon else self.shade(side * 0.8, 0.0)))

    def face_sdf(self):
        g = self.g
        taper = 1 - g.chin * np.clip(self.v / g.face_h, 0, 1) ** 2
        return _ellipse(self.u, self.v, g.face_w * taper, g.face_h)

    def fringe_line(self):
        g = self.g
        phase = math.pi * g.fringe_waves * self.u / g.face_w + g.fringe_phase
        wave = 1 - 2 * np.abs(np.sin(phase / 2)) if self.toon else np.cos(phase)  # spiky bangs vs soft waves
        return g.fringe * g.face_h + 0.06 * g.face_h * wave

    def face(self):
        g, h, w = self.g, self.g.face_h, self.g.face_w
        d = self.face_sdf()
        below_fringe = self.v - self.fringe_line()
        if self.toon:
            self.fill(d, self.skin, outline=False)
            side = np.sign(g.light) or 1.0
            shadow = np.minimum(-side * self.u - w * 0.40 - 0.25 * w * (self.v / h) ** 2, below_fringe - 0.10 * h)
            self.paint(self.cover(np.maximum(d, shadow)), self.skin * 0.86)
            for s in (-1, 1):  # blush
                blush = _ellipse(self.u - s * g.eye_dx * w, self.v - (g.eye_y + 0.30) * h, 0.14 * w, 0.06 * h)
                self.paint(0.45 * self.cover(np.maximum(d, blush)), np.array([1.0, 0.55, 0.6], np.float32))
            self.paint(self.cover(np.abs(d) - self.ink), _INK)
        else:
            col = self.skin * self.shade(self.u / w, (self.v + 0.1 * h) / h * 0.8)
            occlusion = 1 - 0.35 * np.exp(-np.clip(below_fringe, 0, None) / (0.08 * h))
            cheeks = sum(np.exp(-((self.u - s * g.eye_dx * w) ** 2 + (self.v - (g.eye_y + 0.3) * h) ** 2)
                                / (0.02 * w)) for s in (-1, 1))
            col = col * occlusion[..., None] * (1 + 0.02 * self.smooth_noise(0.004)[..., None])
            col = col + cheeks[..., None] * np.array([0.06, -0.02, -0.02], np.float32)
            self.fill(d, col)

    def front_hair(self):
        g, h, w = self.g, self.g.face_h, self.g.face_w
        cap = self.hair_cap()
        d = np.maximum(cap, self.v - self.fringe_line())
        if g.hair_style > 0:  # locks framing the cheeks
            locks = np.maximum.reduce([cap, w * 0.80 - np.abs(self.u), self.v - (g.eye_y + 0.35) * h])
            d = np.minimum(d, locks)
        self.fill(d, self.hair_colour(d))
        if self.toon:  # the anime "angel ring" highlight
            ring = _band(self.v, -0.72 * h - 0.3 * g.hair_top + 0.25 * h * (self.u / w) ** 2, 0.035 * h,
                         self.u, 0.55 * w)
            self.paint(self.cover(np.maximum(ring, np.minimum(d, self.hair_cap()))),
                       0.55 * self.hair + 0.45)

    def eye_frame(self, side):
        g, w, h = self.g, self.g.face_w, self.g.face_h
        return self.u - side * g.eye_dx * w, self.v - g.eye_y * h

    def brows(self):
        g, w = self.g, self.g.face_w
        es = g.eye_size * w
        lift = (0.30 if self.toon else 0.17) * es
        for side in (-1, 1):
            eu, ev = self.eye_frame(side)
            half_len = (0.22 if self.toon else 0.26) * es
            curve = -lift + 0.25 * half_len * (eu / half_len) ** 2 - side * g.brow_tilt * eu - 0.07 * es
            if self.toon:
                self.paint(self.cover(_band(ev, curve, 0.5 * self.ink + 0.01 * es, eu, half_len)), _INK)
            else:
                d = _band(ev, curve, 0.06 * es, eu, half_len)
                self.paint(0.95 * self.cover(d, soft=2.0), self.hair * 0.6)

    def eyes(self):
        g, w = self.g, self.g.face_w
        es = g.eye_size * w
        if self.toon:
            iris = _hsv(g.iris_colour, 0.75, 0.85)
        else:
            iris = _pick(_PHOTO_IRIS, g.iris_colour)
        for side in (-1, 1):
            eu, ev = self.eye_frame(side)
            if self.toon:
                self.toon_eye(eu, ev - 0.05 * es, es, iris)
            else:
                self.photo_eye(eu, ev, es, iris)

    def toon_eye(self, eu, ev, es, iris):
        ew, eh = 0.24 * es, 0.30 * es
        eye = _ellipse(eu, ev, ew, eh)
        self.paint(self.cover(eye), np.ones(3, np.float32))
        iu, iv = eu, ev - 0.10 * eh
        iris_d = np.maximum(_ellipse(iu, iv - 0.08 * eh, 0.75 * ew, 0.85 * eh), eye)
        self.paint(self.cover(iris_d), iris)
        self.paint(self.cover(np.maximum(iris_d, iv + 0.25 * eh)), iris * 0.6)  # darker upper iris
        self.paint(self.cover(np.maximum(_ellipse(iu, iv, 0.33 * ew, 0.42 * eh), eye)), iris * 0.22)
        for du, dv, r in ((-0.32, -0.35, 0.26), (0.30, 0.35, 0.12)):  # catch-light highlights
            self.paint(self.cover(np.maximum(_ellipse(iu - du * ew, iv - dv * eh, r * ew, r * ew), eye)),
                       np.ones(3, np.float32))
        self.paint(self.cover(np.abs(eye) - self.ink * 0.7), _INK)
        lid = np.maximum(np.abs(eye) - min(2.2 * self.ink, 0.2 * eh), ev + 0.35 * eh)  # heavy upper lash line
        self.paint(self.cover(lid), _INK)

    def photo_eye(self, eu, ev, es, iris):
        ew, eh = 0.24 * es, 0.13 * es
        socket = _ellipse(eu, ev - 0.3 * eh, 1.6 * ew, 2.2 * eh)
        self.darken(self.cover(socket, soft=6.0), 0.22)
        eye = _ellipse(eu, ev, ew, eh)
        self.paint(self.cover(eye, soft=1.5), np.array([0.90, 0.87, 0.84], np.float32) * 0.9)
        iris_d = np.maximum(_ellipse(eu, ev, 1.0 * eh, 1.0 * eh), eye)
        radial = np.clip(np.sqrt(eu ** 2 + ev ** 2) / (1.0 * eh), 0, 1)[..., None]
        self.paint(self.cover(iris_d, soft=1.5), iris * (0.9 - 0.5 * radial))
        self.paint(self.cover(np.maximum(_ellipse(eu, ev, 0.5 * eh, 0.5 * eh), eye), soft=1.5),
                   np.full(3, 0.04, np.float32))
        lid = np.maximum(np.abs(eye) - 0.012 * es, ev)
        self.paint(0.8 * self.cover(lid, soft=2.0), self.skin * 0.3)

    def nose(self):
        g, w, h = self.g, self.g.face_w, self.g.face_h
        ny = g.nose_y * h
        if self.toon:
            tick = _band(self.u, -0.03 * w * np.sign(g.light or 1), 0.4 * self.ink + 0.004, self.v - ny, 0.03 * h)
            self.paint(self.cover(tick), self.skin * 0.55)
            return
        side = -np.sign(g.light or 1)
        shadow = _ellipse(self.u - side * 0.06 * w, self.v - (ny - 0.08 * h), 0.05 * w, 0.15 * h)
        self.darken(self.cover(shadow, soft=6.0), 0.14)
        for s in (-1, 1):
            nostril = _ellipse(self.u - s * 0.07 * w, self.v - ny, 0.04 * w, 0.02 * h)
            self.darken(self.cover(nostril, soft=3.0), 0.35)

    def mouth(self):
        g, w, h = self.g, self.g.face_w, self.g.face_h
        mw = g.mouth_w * w
        t = np.clip(1 - (self.u / mw) ** 2, 0, 1)
        line = g.mouth_y * h + g.smile * 0.06 * h * t
        if self.toon:
            if g.mouth_open > 0.65:
                lower = line + 0.16 * h * (g.mouth_open - 0.5) * t
                d = np.maximum.reduce([line - self.v, self.v - lower, np.abs(self.u) - mw * 0.8])
                self.fill(d, np.array([0.62, 0.12, 0.18], np.float32))
            else:
                self.paint(self.cover(_band(self.v, line, 0.5 * self.ink + 0.004, self.u, mw * 0.8)), _INK)
            return
        lips = np.maximum.reduce([line - 0.05 * h * np.sqrt(t) - self.v, self.v - line - 0.07 * h * np.sqrt(t),
                                  np.abs(self.u) - mw])
        self.paint(0.95 * self.cover(lips, soft=2.0), self.skin * np.array([0.72, 0.32, 0.34], np.float32))
        gap = 0.012 * h + (0.03 * h * (g.mouth_open - 0.65) if g.mouth_open > 0.65 else 0.0)
        self.paint(0.8 * self.cover(_band(self.v, line, gap, self.u, mw * 0.9), soft=2.5),
                   self.skin * np.array([0.35, 0.18, 0.18], np.float32))


# ---------------------------------------------------------------------------------------------- datasets


def image_rng(seed: int, index: int) -> np.random.Generator:
    """Image `index` of a dataset with `seed`: the same in both domains, so their layouts pair up."""
    return np.random.default_rng([seed, index])


def write_domain(dst, domain: str, count: int, resolution: int, seed: int = 0,
                 val_fraction: float = 0.1) -> PrepareReport:
    """Write `count` faces of one domain as a prepared folder (same layout and manifest as
    `prepare images`). A re-run with the same arguments writes identical bytes."""
    if domain not in DOMAINS:
        raise UserError(f"domain {domain!r}: expected one of {', '.join(DOMAINS)}")
    if count < 1:
        raise UserError(f"count {count}: expected >= 1")
    check_resolution(resolution)
    check_val_fraction(val_fraction)
    dst = Path(dst)
    if dst.exists() and not dst.is_dir():
        raise UserError(f"{dst}: is a file; expected an output folder")
    dst.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dst)
    previous = read_manifest(dst)
    settings = {"kind": "synthetic", "source": f"synthetic:{domain}", "resolution": resolution,
                "domain": domain, "seed": seed}
    report = PrepareReport(folder=dst, resolution=resolution)
    entries = []
    for i in range(count):
        img = render_face(image_rng(seed, i), domain, resolution)
        entry = Entry(file=f"{domain}{i:06d}.png", split="train", sha256=sha256_bytes(img.tobytes()),
                      source=f"synthetic:{domain}:seed={seed}:index={i}")
        save_png(img, dst / entry.file)
        entries.append(entry)
    report.written = count
    return finish(dst, report, settings, entries, val_fraction, seed, previous, "images")
