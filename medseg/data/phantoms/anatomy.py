"""The phantom's anatomy, drawn once per case in world space (RAS+ mm, body centred near 0).

RAS+ (see :mod:`medseg.geometry`): +x towards the patient's Right, +y Anterior, +z Superior.
So the liver (patient right) sits at *larger* x than the spleen (patient left), the kidneys and
spine are posterior (smaller y) and the scan runs along z.

An :class:`Anatomy` is a list of :class:`Part` s painted in order (later parts win) over a
body made of nested layers (skin, subcutaneous fat, muscle wall, visceral cavity). Each part
has a class label (1 liver, 2 spleen, 3 kidney, 4 tumour; ``None`` = not a labelled class,
painted as background 0) and an HU value. Dimensions are written for an adult ("medium") and
scaled for the miniature "small" size: in-plane by the body size, along z by ``z_scale``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medseg.data.phantoms.shapes import Cylinder, Ellipsoid, Warp, rot_z, rotation, smooth_field

#: Class ids written in the label maps (dataset.json ``labels``).
LABELS = {"background": 0, "liver": 1, "spleen": 2, "kidney": 3, "tumour": 4}

#: Lesion families (``medseg phantoms --family``): ``abdomen`` (the default: 0-3 liver / kidney
#: tumours, label ``tumour``) and ``metastases`` (1-6 liver metastases, label ``metastasis``,
#: and other label numbers, see :data:`FAMILY_LABELS`).
FAMILIES = ("abdomen", "metastases")

#: Label maps written per family. The anatomy is always painted with :data:`LABELS`; the
#: ``metastases`` family's label map is then renumbered (``FAMILY_REMAP``).
FAMILY_LABELS = {
    "abdomen": LABELS,
    "metastases": {"background": 0, "metastasis": 1, "liver": 2, "spleen": 3, "kidney": 4},
}
#: painted value (:data:`LABELS`) -> written value, per family (identity for ``abdomen``).
FAMILY_REMAP = {"abdomen": None, "metastases": (0, 2, 3, 4, 1)}

#: Metastasis radii (mm, log-uniform) per size: diameters about 5-14 mm in the miniature
#: ``small`` abdomen, 3-30 mm at adult size.
METASTASIS_RADIUS = {"small": (2.5, 7.0), "medium": (1.5, 15.0)}

#: A tumour is kept where its host organ's normalised radius is below this (host "dilated").
HOST_MARGIN = 1.15


@dataclass(frozen=True)
class SizeSpec:
    """World extents of one phantom size (all mm).

    Attributes:
        half_width: range of the body half-width along x (patient left-right).
        depth_ratio: range of (antero-posterior half-depth) / half_width.
        z_length: range of the scanned length along z.
        z_scale: factor applied to the adult craniocaudal organ dimensions and positions.
        margin: range of the air margin between body and field of view.
        tumour_radius: range of tumour radii (log-uniform), before clipping to the host size.
    """

    name: str
    half_width: tuple[float, float]
    depth_ratio: tuple[float, float]
    z_length: tuple[float, float]
    z_scale: float
    margin: tuple[float, float]
    tumour_radius: tuple[float, float]


SIZES: dict[str, SizeSpec] = {
    "small": SizeSpec("small", (29.0, 34.0), (0.68, 0.78), (64.0, 84.0), 0.42, (2.0, 5.0), (3.0, 8.0)),
    "medium": SizeSpec("medium", (140.0, 160.0), (0.68, 0.78), (150.0, 200.0), 1.0, (8.0, 25.0), (3.0, 25.0)),
}


@dataclass(frozen=True)
class Body:
    """The body outline: a warped superellipse cylinder along z, with nested layers.

    ``depth(x, y, z)`` is the distance (mm) from the outline measured inwards along the ray
    from the body axis: < 0 outside, then skin, subcutaneous fat and the muscle wall, whose
    thicknesses blend from ``back`` (posterior) to ``front`` (anterior) values.
    """

    centre: tuple[float, float]
    a: float
    b_ant: float
    b_post: float
    power: float
    warp: Warp
    skin: float
    fat: tuple[float, float]  # (front, back) mm
    muscle: tuple[float, float]  # (front, back) mm

    def layers(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
        """Boolean masks ``body`` (inside the outline), ``under_skin``, ``deep`` (under the
        subcutaneous fat) and ``cavity`` (inside the muscle wall), all shaped like ``x``."""
        xw, yw, _ = self.warp.apply(x, y, z)
        dx = xw - np.float32(self.centre[0])
        dy = yw - np.float32(self.centre[1])
        b = np.where(dy > 0, np.float32(self.b_ant), np.float32(self.b_post))
        p = np.float32(self.power)
        rho = (np.abs(dx * np.float32(1 / self.a)) ** p + np.abs(dy / b) ** p) ** np.float32(1 / self.power)
        r = np.sqrt(dx * dx + dy * dy)
        depth = r * (np.float32(1) / np.maximum(rho, np.float32(1e-6)) - np.float32(1))
        front = (np.float32(1) + dy / np.maximum(r, np.float32(1e-3))) * np.float32(0.5)  # 1 anterior, 0 posterior
        fat = np.float32(self.fat[1]) + front * np.float32(self.fat[0] - self.fat[1])
        mus = np.float32(self.muscle[1]) + front * np.float32(self.muscle[0] - self.muscle[1])
        skin = np.float32(self.skin)
        return {
            "body": depth >= 0,
            "under_skin": depth >= skin,
            "deep": depth >= skin + fat,
            "cavity": depth >= skin + fat + mus,
        }

    def support(self, ux: float, uy: float) -> float:
        """Half-extent (mm) of the outline along the in-plane direction (ux, uy), warp included."""
        q = self.power / (self.power - 1)  # dual norm: exact support of a superellipse
        b = max(self.b_ant, self.b_post)
        return float((abs(self.a * ux) ** q + abs(b * uy) ** q) ** (1 / q)) + self.warp.max_disp


@dataclass(frozen=True)
class Part:
    """One painted structure.

    Attributes:
        name: e.g. ``"liver"``, ``"vertebral body"``, ``"tumour 1"``.
        shape: an :class:`Ellipsoid` or :class:`Cylinder` (world space).
        hu: HU inside the shape.
        label: class id painted (``None``: background 0, overriding organs beneath).
        within: body layer the part is confined to: ``"body"``, ``"deep"`` or ``"cavity"``.
        host: tumours only: kept where ``host.rho < HOST_MARGIN``.
        inner: optional ``(rho, hu)``: HU inside ``rho < inner[0]`` (kidney medulla).
        rim: optional ``(rho, hu)``: HU where ``rho >= rim[0]`` (cortical bone).
        disc: optional ``(period_mm, fraction, phase_mm, hu)``: z-periodic intervertebral discs.
    """

    name: str
    shape: Ellipsoid | Cylinder
    hu: float
    label: int | None = None
    within: str = "cavity"
    host: Ellipsoid | None = None
    inner: tuple[float, float] | None = None
    rim: tuple[float, float] | None = None
    disc: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class Tumour:
    """Summary of one tumour: host organ, kind (hypodense/hyperdense), size and HU."""

    host: str
    kind: str
    radius_mm: float
    hu: float
    centre: tuple[float, float, float]
    part: Part


@dataclass(frozen=True)
class Anatomy:
    """Everything that defines a case's anatomy, independent of the voxel grid.

    Attributes:
        size: the :class:`SizeSpec` used.
        body: the outline and its layers.
        z_range: (lo, hi) mm along z that the scan covers (at the body axis).
        hu: tissue name -> HU for this case.
        parts: painted in order after the body layers and the bowel texture.
        tumours: the tumours (their parts are also in ``parts``).
        bowel: scalar field; bowel loops where it exceeds ``bowel_threshold``, visceral fat elsewhere.
        contrast: True for a contrast-enhanced (portal venous) case.
    """

    size: SizeSpec
    body: Body
    z_range: tuple[float, float]
    hu: dict[str, float]
    parts: list[Part]
    tumours: list[Tumour]
    bowel: Warp
    bowel_threshold: float
    contrast: bool


def _hu_table(rng: np.random.Generator, contrast: bool) -> dict[str, float]:
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    hu = {
        "air": -1000.0,
        "skin": u(20, 50),
        "fat": u(-115, -85),
        "muscle": u(40, 55),
        "bowel": u(15, 40),
        "gas": u(-990, -900),
        "cancellous": u(300, 400),
        "cortical": u(550, 700),
        "disc": u(70, 100),
        "csf": u(5, 20),
    }
    hu["visceral_fat"] = hu["fat"] + u(-5, 10)
    if contrast:  # portal venous phase
        hu.update(liver=u(90, 115), spleen=u(100, 125), kidney=u(140, 180), blood=u(140, 190))
        hu["medulla"] = hu["kidney"] - u(20, 60)
    else:
        hu.update(liver=u(52, 66), spleen=u(42, 52), kidney=u(28, 38), blood=u(35, 48))
        hu["medulla"] = hu["kidney"] - u(0, 4)
    return hu


def _body(rng: np.random.Generator, spec: SizeSpec) -> Body:
    a = rng.uniform(*spec.half_width)
    s = a / 150.0
    b = a * rng.uniform(*spec.depth_ratio)
    warp = Warp.random(rng, (1.0 * a, 2.5 * a), 0.04 * a, n=3, z_scale=1.5 * spec.z_scale / s)
    return Body(
        centre=(float(rng.uniform(-5, 5) * s), float(rng.uniform(-5, 5) * s)),
        a=float(a),
        b_ant=float(b),
        b_post=float(b * rng.uniform(0.88, 1.0)),
        power=float(rng.uniform(2.2, 2.9)),
        warp=warp,
        skin=float(rng.uniform(1.5, 2.5)),
        fat=(float(rng.uniform(10, 35) * s), float(rng.uniform(5, 15) * s)),
        muscle=(float(rng.uniform(8, 15) * s), float(rng.uniform(5, 10) * s)),
    )


def _organ_warp(rng: np.random.Generator, semi: np.ndarray, frac: float = 0.08) -> Warp:
    m = float(np.min(semi))
    return Warp.random(rng, (1.5 * m, 4.0 * m), frac * m, n=3)


def _ellipsoid(rng, centre, semi, rot=None, power=2.0, warp_frac=0.08) -> Ellipsoid:
    semi = np.asarray(semi, float)
    return Ellipsoid(np.asarray(centre, float), semi, np.eye(3) if rot is None else rot, power,
                     _organ_warp(rng, semi, warp_frac) if warp_frac else None)


@dataclass(frozen=True)
class _Frame:
    """Placement relative to this body: adult ("canonical") mm offsets scaled to the case.

    x offsets scale by ``s`` (half-width / 150 mm), y offsets by ``t`` (half-depth / 110 mm),
    z by ``zs``; ``y_vb`` is the y of the vertebral body centre.
    """

    cx: float
    cy: float
    a: float
    b: float
    s: float
    t: float
    zs: float
    y_vb: float

    def cyl(self, dx: float, dy: float, rx: float, ry: float) -> Cylinder:
        """A z-cylinder at canonical offset (dx, dy) mm from the vertebral body centre."""
        centre = np.array([self.cx + dx * self.s, self.y_vb + dy * self.t])
        return Cylinder(centre, np.array([rx * self.s, ry * self.t]))


def sample_anatomy(rng: np.random.Generator, size: str, family: str = "abdomen") -> Anatomy:
    """Draw one case's anatomy (deterministic for the generator's state). ``family``
    ``metastases`` draws liver metastases instead of the liver / kidney tumours."""
    spec = SIZES[size]
    contrast = bool(rng.random() < 0.5)
    hu = _hu_table(rng, contrast)
    body = _body(rng, spec)
    z_c = rng.uniform(-10, 10) * spec.z_scale
    length = rng.uniform(*spec.z_length)
    z_range = (float(z_c - length / 2), float(z_c + length / 2))
    s, t = body.a / 150.0, body.b_ant / 110.0
    f = _Frame(body.centre[0], body.centre[1], body.a, body.b_ant, s, t, spec.z_scale,
               body.centre[1] - body.b_post + rng.uniform(70, 80) * t)
    parts = _gas(rng, f, hu, z_range) + _muscles(f, hu)
    organs, liver = _liver_spleen(rng, f, hu)
    kidney_parts, kidneys = _kidneys(rng, f, hu)
    if family == "metastases":
        tumours = _metastases(rng, size, hu, z_range, [p.shape for p in organs if p.name == "liver"])
    else:
        tumours = _tumours(rng, spec, hu, z_range, {"liver": liver, **kidneys})
    parts += organs + kidney_parts + [tm.part for tm in tumours] + _vessels_spine(rng, f, hu)
    bowel = smooth_field(rng, (25 * s, 60 * s), n=10)
    return Anatomy(spec, body, z_range, hu, parts, tumours, bowel, float(rng.uniform(-0.2, 0.3)), contrast)


def _gas(rng: np.random.Generator, f: _Frame, hu: dict, z_range: tuple[float, float]) -> list[Part]:
    """0-4 bowel gas pockets, anterior and left of the liver (organs painted later win)."""
    u = rng.uniform
    out = []
    for _ in range(int(rng.integers(0, 5))):
        centre = (f.cx + u(-0.5, 0.2) * f.a, f.cy + u(0.15, 0.55) * f.b, u(*z_range))
        semi = np.array([u(8, 20) * f.s, u(6, 15) * f.t, u(8, 20) * f.zs])
        out.append(Part("bowel gas", _ellipsoid(rng, centre, semi, rot_z(u(0, np.pi)), warp_frac=0.15), hu["gas"]))
    return out


def _muscles(f: _Frame, hu: dict) -> list[Part]:
    """Psoas (in the cavity, beside the vertebral body) and paraspinal muscles (behind it)."""
    out = []
    for side in (+1, -1):
        out.append(Part("psoas", f.cyl(side * 35, 2, 14, 14), hu["muscle"]))
        out.append(Part("paraspinal", f.cyl(side * 28, -42, 20, 20), hu["muscle"], within="deep"))
    return out


def _liver_spleen(rng: np.random.Generator, f: _Frame, hu: dict) -> tuple[list[Part], Ellipsoid]:
    """Liver (right lobe at patient right = +x, left lobe across the midline anteriorly) and
    spleen (patient left, posterolateral, long axis along the wall). Returns the parts and the
    right lobe (the tumour host)."""
    u, zs = rng.uniform, f.zs
    z_liver = u(25, 45) * zs
    right = _ellipsoid(rng, (f.cx + u(0.36, 0.44) * f.a, f.cy + u(-0.05, 0.05) * f.b, z_liver),
                       (u(0.34, 0.4) * f.a, u(0.5, 0.58) * f.b, u(60, 75) * zs), rot_z(u(-0.2, 0.2)), power=2.3)
    left = _ellipsoid(rng, (f.cx + u(-0.03, 0.08) * f.a, f.cy + u(0.26, 0.34) * f.b, z_liver + u(5, 20) * zs),
                      (u(0.28, 0.36) * f.a, u(0.17, 0.23) * f.b, u(35, 45) * zs), rot_z(u(-0.3, 0.1)))
    spleen = _ellipsoid(rng, (f.cx - u(0.54, 0.6) * f.a, f.cy - u(0.25, 0.35) * f.b, u(25, 50) * zs),
                        (u(0.12, 0.16) * f.a, u(0.26, 0.34) * f.b, u(40, 55) * zs), rot_z(np.radians(u(40, 65))))
    parts = [Part("liver", right, hu["liver"], LABELS["liver"]), Part("liver", left, hu["liver"], LABELS["liver"]),
             Part("spleen", spleen, hu["spleen"], LABELS["spleen"])]
    return parts, right


def _kidneys(rng: np.random.Generator, f: _Frame, hu: dict) -> tuple[list[Part], dict[str, Ellipsoid]]:
    """Two kidneys beside the vertebral body, the right one a little lower, each tilted
    (upper pole medial) and turned so the hilum faces anteromedially; darker medulla inside."""
    u, zs = rng.uniform, f.zs
    z_left = u(-35, -15) * zs
    parts, shapes = [], {}
    for side, name in ((+1, "right kidney"), (-1, "left kidney")):
        z_k = z_left - (u(5, 20) * zs if side > 0 else 0.0)
        rot = rot_z(side * np.radians(u(20, 40))) @ rotation(np.array([0.0, 1.0, 0.0]), side * np.radians(u(5, 15)))
        k = _ellipsoid(rng, (f.cx + side * u(0.3, 0.36) * f.a, f.y_vb + u(-5, 10) * f.t, z_k),
                       (u(0.15, 0.19) * f.a, u(15, 20) * f.t, u(45, 55) * zs), rot)
        shapes[name] = k
        parts.append(Part(name, k, hu["kidney"], LABELS["kidney"], inner=(0.6, hu["medulla"])))
    return parts, shapes


def _vessels_spine(rng: np.random.Generator, f: _Frame, hu: dict) -> list[Part]:
    """Aorta (left), IVC (right) and the spine with z-periodic discs. Not labelled: painted
    last, they override organs (e.g. the intrahepatic IVC)."""
    period = rng.uniform(32, 38) * f.zs
    disc = (period, rng.uniform(0.2, 0.28), rng.uniform(0, period), hu["disc"])
    bone = hu["cortical"]
    return [
        Part("aorta", f.cyl(-18, 30, 11, 11), hu["blood"]),
        Part("ivc", f.cyl(22, 28, 13, 9), hu["blood"]),
        Part("vertebral body", f.cyl(0, 0, 20, 16), hu["cancellous"], within="deep", rim=(0.85, bone), disc=disc),
        Part("vertebral arch", f.cyl(0, -27, 15, 15), bone, within="deep"),
        Part("spinal canal", f.cyl(0, -27, 9, 9), hu["csf"], within="deep"),
        Part("spinous process", f.cyl(0, -45, 5, 15), bone, within="deep"),
        Part("transverse process", f.cyl(26, -24, 17, 5), bone, within="deep"),
        Part("transverse process", f.cyl(-26, -24, 17, 5), bone, within="deep"),
    ]


def _inside_point(rng: np.random.Generator, host: Ellipsoid, core: float,
                  z_lo: float, z_hi: float) -> np.ndarray | None:
    """A random point in the host's core (normalised radius <= ``core``) with z in [z_lo, z_hi]."""
    for _ in range(200):
        v = rng.uniform(-1, 1, size=3)
        if np.linalg.norm(v) <= 1:
            p = host.centre + host.rot @ (host.semi * core * v)
            if z_lo <= p[2] <= z_hi:
                return p
    return None


def _tumours(rng: np.random.Generator, spec: SizeSpec, hu: dict, z_range: tuple[float, float],
             hosts: dict[str, Ellipsoid]) -> list[Tumour]:
    """0 to 3 tumours in the liver (60%) or a kidney, hypodense (60%) or hyperdense."""
    out = []
    for n in range(int(rng.integers(0, 4))):
        host_name = "liver" if rng.random() < 0.6 else ("right kidney" if rng.random() < 0.5 else "left kidney")
        host = hosts[host_name]
        lo, hi = spec.tumour_radius
        r_max = max(lo, min(hi, 0.8 * float(np.min(host.semi))))
        r = float(np.exp(rng.uniform(np.log(lo), np.log(r_max))))
        hypo = bool(rng.random() < 0.6)
        base = hu["liver" if host_name == "liver" else "kidney"]
        value = max(0.0, base + (-1 if hypo else 1) * rng.uniform(20, 60))
        centre = _inside_point(rng, host, 0.5, z_range[0] + r, z_range[1] - r)
        if centre is None:  # the host lies outside the scanned range: no tumour there
            continue
        rot = rotation(rng.normal(size=3), rng.uniform(0, np.pi))
        shape = Ellipsoid(centre, r * rng.uniform(0.8, 1.2, size=3), rot, 2.0,
                          Warp.random(rng, (2 * r, 5 * r), 0.1 * r, n=2))
        part = Part(f"tumour {n + 1}", shape, value, LABELS["tumour"], host=host)
        out.append(Tumour(host_name, "hypodense" if hypo else "hyperdense", r, float(value),
                          tuple(float(v) for v in centre), part))
    return out


def _metastases(rng: np.random.Generator, size: str, hu: dict, z_range: tuple[float, float],
                lobes: list[Ellipsoid]) -> list[Tumour]:
    """1 to 6 liver metastases (either lobe, by lobe volume), hypodense (70%) or hyperdense,
    25-60 HU from the liver, radii log-uniform in :data:`METASTASIS_RADIUS`, not touching each
    other (centres at least r1 + r2 + 1.5 mm apart)."""
    lo, hi = METASTASIS_RADIUS[size]
    vol = np.array([float(np.prod(e.semi)) for e in lobes])
    out: list[Tumour] = []
    for n in range(int(rng.integers(1, 7))):
        host = lobes[int(rng.choice(len(lobes), p=vol / vol.sum()))]
        r_max = max(lo, min(hi, 0.7 * float(np.min(host.semi))))
        r = float(np.exp(rng.uniform(np.log(lo), np.log(r_max))))
        hypo = bool(rng.random() < 0.7)
        value = max(0.0, hu["liver"] + (-1 if hypo else 1) * rng.uniform(25, 60))
        centre = None
        for _ in range(20):
            c = _inside_point(rng, host, 0.6, z_range[0] + r, z_range[1] - r)
            if c is not None and all(np.linalg.norm(c - np.asarray(t.centre)) >= r + t.radius_mm * 1.2 + 1.5
                                     for t in out):
                centre = c
                break
        if centre is None:
            continue
        rot = rotation(rng.normal(size=3), rng.uniform(0, np.pi))
        shape = Ellipsoid(centre, r * rng.uniform(0.85, 1.15, size=3), rot, 2.0,
                          Warp.random(rng, (2 * r, 5 * r), 0.08 * r, n=2))
        part = Part(f"metastasis {n + 1}", shape, value, LABELS["tumour"], host=host)
        out.append(Tumour("liver", "hypodense" if hypo else "hyperdense", r, float(value),
                          tuple(float(v) for v in centre), part))
    return out
