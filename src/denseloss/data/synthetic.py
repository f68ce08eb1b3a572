"""Built-in, no-download data set: ray-cast scenes of 3-D primitives on a floor in front of a wall.

Every sample is rendered on the fly (vectorised NumPy) from ``(seed, split, domain, index)`` and
carries a dense semantic label (with a 1-px void band at object borders, as PASCAL VOC has),
ScribbleSup-style scribbles derived from it, exact depth and exact surface normals. Two domains
share the label set: ``"synthetic"`` (flat per-class colours, clean Lambertian shading) and
``"real"`` (procedural textures, class-independent colours, coloured light with highlights,
vignetting, blur and sensor noise) for unsupervised domain adaptation.

Geometry conventions:

* World frame: ``y`` up, the floor is ``y = 0``, the camera looks roughly along ``+z``.
* Camera frame (OpenCV): ``x`` right, ``y`` down, ``z`` forward. ``depth`` is the ``z``
  coordinate of the hit point in the camera frame (not the Euclidean ray length). ``normal`` is
  the unit surface normal in the camera frame, facing the camera (``n_z < 0``); the floor's
  normal points up, i.e. towards ``-y``.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable
from typing import Any, ClassVar, Final, Literal

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from denseloss.data.sample import IGNORE_INDEX, Sample

__all__ = ["SyntheticScenes", "build_builtin", "render_scene"]

Domain = Literal["synthetic", "real"]

_SPLITS: Final[dict[str, int]] = {"train": 0, "val": 1, "test": 2}
_DOMAINS: Final[dict[str, int]] = {"synthetic": 0, "real": 1}
_DEFAULT_LENGTH: Final[dict[str, int]] = {"train": 2000, "val": 200, "test": 200}

FLOOR, WALL, SPHERE, BOX, CYLINDER, CONE = range(6)
_OBJECT_CLASSES: Final[tuple[int, ...]] = (SPHERE, BOX, CYLINDER, CONE)
# Hue of each object class in the "synthetic" domain; the "real" domain rotates these.
_CLASS_HUE: Final[dict[int, float]] = {SPHERE: 0.0, BOX: 0.62, CYLINDER: 0.33, CONE: 0.14}
_EPS: Final[float] = 1e-4
_FAR: Final[float] = np.inf


# ----------------------------------------------------------------------------- ray intersections
# Each function takes ray origins ``o`` (N, 3) and directions ``d`` (N, 3), world frame, and
# returns the ray parameter ``t`` (N,) of the first hit with t > eps (inf on a miss) and the
# outward unit normal (N, 3) at that hit (arbitrary where missed).


def _safe(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 1e-12, 1e-12, x)


def _plane(o: np.ndarray, d: np.ndarray, point: np.ndarray, normal: np.ndarray):
    denom = d @ normal
    t = ((point - o) @ normal) / _safe(denom)
    t = np.where((denom < 0) & (t > _EPS), t, _FAR)
    return t, np.broadcast_to(normal, d.shape)


def _quadratic_roots(a: np.ndarray, b: np.ndarray, c: np.ndarray):
    disc = b * b - 4 * a * c
    s = np.sqrt(np.maximum(disc, 0.0))
    a2 = _safe(2 * a)
    r0, r1 = (-b - s) / a2, (-b + s) / a2
    hit = disc >= 0
    return np.where(hit, np.minimum(r0, r1), _FAR), np.where(hit, np.maximum(r0, r1), _FAR)


def _first_valid(t_lo: np.ndarray, ok_lo: np.ndarray, t_hi: np.ndarray, ok_hi: np.ndarray):
    ok_lo = ok_lo & (t_lo > _EPS)
    ok_hi = ok_hi & (t_hi > _EPS)
    return np.where(ok_lo, t_lo, np.where(ok_hi, t_hi, _FAR))


def _sphere(o: np.ndarray, d: np.ndarray, p: dict[str, Any]):
    center, r = p["center"], p["radius"]
    oc = o - center
    a = np.einsum("ij,ij->i", d, d)
    b = 2 * np.einsum("ij,ij->i", oc, d)
    c = np.einsum("ij,ij->i", oc, oc) - r * r
    t_lo, t_hi = _quadratic_roots(a, b, c)
    t = _first_valid(t_lo, np.isfinite(t_lo), t_hi, np.isfinite(t_hi))
    hit = o + np.where(np.isfinite(t), t, 0)[:, None] * d
    return t, (hit - center) / r


def _box(o: np.ndarray, d: np.ndarray, p: dict[str, Any]):
    rot, center, half = p["rotation"], p["center"], p["half"]
    ol = (o - center) @ rot  # world -> local (rot's columns are the local axes)
    dl = _safe(d @ rot)
    t1, t2 = (-half - ol) / dl, (half - ol) / dl
    near, far = np.minimum(t1, t2), np.maximum(t1, t2)
    t_near, t_far = near.max(axis=1), far.min(axis=1)
    hit = t_far >= np.maximum(t_near, _EPS)
    t = np.where(hit, np.where(t_near > _EPS, t_near, t_far), _FAR)
    axis = np.where(t_near > _EPS, near.argmax(axis=1), far.argmin(axis=1))
    local_n = np.zeros_like(ol)
    rows = np.arange(len(ol))
    sign = np.where(t_near > _EPS, -np.sign(dl[rows, axis]), np.sign(dl[rows, axis]))
    local_n[rows, axis] = sign
    return t, local_n @ rot.T


def _cylinder(o: np.ndarray, d: np.ndarray, p: dict[str, Any]):
    cx, cz, r, h = p["cx"], p["cz"], p["radius"], p["height"]
    ox, oz = o[:, 0] - cx, o[:, 2] - cz
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = 2 * (ox * d[:, 0] + oz * d[:, 2])
    c = ox**2 + oz**2 - r * r
    t_lo, t_hi = _quadratic_roots(a, b, c)

    def in_height(t: np.ndarray) -> np.ndarray:
        y = o[:, 1] + np.where(np.isfinite(t), t, 0) * d[:, 1]
        return np.isfinite(t) & (y >= 0) & (y <= h)

    t_side = _first_valid(t_lo, in_height(t_lo), t_hi, in_height(t_hi))
    t_cap = (h - o[:, 1]) / _safe(d[:, 1])
    xc, zc = ox + t_cap * d[:, 0], oz + t_cap * d[:, 2]
    t_cap = np.where((t_cap > _EPS) & (xc**2 + zc**2 <= r * r) & (d[:, 1] < 0), t_cap, _FAR)
    t = np.minimum(t_side, t_cap)
    tt = np.where(np.isfinite(t), t, 0)
    n = np.stack([ox + tt * d[:, 0], np.zeros_like(tt), oz + tt * d[:, 2]], axis=1) / r
    n[t_cap <= t_side] = (0.0, 1.0, 0.0)
    return t, n


def _cone(o: np.ndarray, d: np.ndarray, p: dict[str, Any]):
    cx, cz, r, h = p["cx"], p["cz"], p["radius"], p["height"]
    k2 = (r / h) ** 2
    ox, oy, oz = o[:, 0] - cx, o[:, 1] - h, o[:, 2] - cz  # relative to the apex
    a = d[:, 0] ** 2 + d[:, 2] ** 2 - k2 * d[:, 1] ** 2
    b = 2 * (ox * d[:, 0] + oz * d[:, 2] - k2 * oy * d[:, 1])
    c = ox**2 + oz**2 - k2 * oy**2
    t_lo, t_hi = _quadratic_roots(a, b, c)

    def on_nappe(t: np.ndarray) -> np.ndarray:
        y = oy + np.where(np.isfinite(t), t, 0) * d[:, 1]
        return np.isfinite(t) & (y >= -h) & (y <= 0)

    t = _first_valid(t_lo, on_nappe(t_lo), t_hi, on_nappe(t_hi))
    tt = np.where(np.isfinite(t), t, 0)
    x, y, z = ox + tt * d[:, 0], oy + tt * d[:, 1], oz + tt * d[:, 2]
    n = np.stack([x, -k2 * y, z], axis=1)
    return t, n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)


_INTERSECT: Final[dict[int, Callable[..., tuple[np.ndarray, np.ndarray]]]] = {
    SPHERE: _sphere,
    BOX: _box,
    CYLINDER: _cylinder,
    CONE: _cone,
}


# ----------------------------------------------------------------------------- scene sampling


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _sample_objects(rng: np.random.Generator, camera_x: float, tan_half_fov: float, wall_z: float):
    objects: list[dict[str, Any]] = []
    count = int(rng.integers(2, 6))
    for _ in range(count * 20):
        if len(objects) == count:
            break
        cls = int(rng.choice(_OBJECT_CLASSES))
        p: dict[str, Any] = {"cls": cls}
        if cls == SPHERE:
            p["radius"] = rng.uniform(0.35, 0.7)
            footprint = height = p["radius"]
        elif cls == BOX:
            half = np.array([rng.uniform(0.3, 0.55), 0.0, rng.uniform(0.3, 0.55)])
            half[1] = rng.uniform(0.25, 0.7)
            p["half"] = half
            p["rotation"] = _rot_y(rng.uniform(0, math.pi / 2))
            footprint, height = float(np.hypot(half[0], half[2])), 2 * half[1]
        elif cls == CYLINDER:
            p["radius"], p["height"] = rng.uniform(0.25, 0.45), rng.uniform(0.6, 1.5)
            footprint, height = p["radius"], p["height"]
        else:
            p["radius"], p["height"] = rng.uniform(0.35, 0.6), rng.uniform(0.8, 1.7)
            footprint, height = p["radius"], p["height"]
        z = rng.uniform(2.3, min(6.0, wall_z - footprint - 0.2))
        x = camera_x + rng.uniform(-0.75, 0.75) * z * tan_half_fov
        if any(
            math.hypot(x - q["x"], z - q["z"]) < footprint + q["footprint"] + 0.05 for q in objects
        ):
            continue
        p.update(x=x, z=z, footprint=footprint, top=height)
        if cls == SPHERE:
            p["center"] = np.array([x, p["radius"], z])
        elif cls == BOX:
            p["center"] = np.array([x, p["half"][1], z])
        else:
            p["cx"], p["cz"] = x, z
        objects.append(p)
    return objects


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1))))


def _surface_colours(rng: np.random.Generator, domain: str, classes: list[int]) -> list[np.ndarray]:
    """Base albedo (3,) per surface (floor, wall, objects...), drawn per domain."""
    colours = []
    for cls in classes:
        if domain == "synthetic":
            if cls == FLOOR:
                c = _hsv(rng.uniform(0.05, 0.12), rng.uniform(0.1, 0.25), rng.uniform(0.55, 0.7))
            elif cls == WALL:
                c = _hsv(rng.uniform(0.5, 0.6), rng.uniform(0.05, 0.15), rng.uniform(0.8, 0.92))
            else:
                # Hue correlates with the class (±0.15 around its hue) but does not define it,
                # so a source model must also learn shape: what transfers to the other domain.
                c = _hsv(
                    _CLASS_HUE[cls] + rng.uniform(-0.15, 0.15),
                    rng.uniform(0.65, 0.9),
                    rng.uniform(0.75, 0.95),
                )
        elif cls == FLOOR:
            c = _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.15, 0.45), rng.uniform(0.35, 0.65))
        elif cls == WALL:
            c = _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.1, 0.4), rng.uniform(0.5, 0.85))
        else:
            # Any hue, less saturated: colour no longer identifies the class; the shape does.
            # (A systematic hue permutation would make the source's colour cue wrong on every
            # object, a shift no self-training method can undo; this one leaves shape to adapt.)
            c = _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.25, 0.6), rng.uniform(0.45, 0.9))
        colours.append(c)
    return colours


def _texture(rng: np.random.Generator, points: np.ndarray, cls: int) -> np.ndarray:
    """Procedural 3-D texture in [0, 1] evaluated at world points (M, 3)."""
    kind = int(rng.integers(0, 3))
    if cls in (FLOOR, WALL):
        kind = int(rng.integers(0, 2)) * 2  # stripes (planks) or fractal noise, as floors are
    freq = rng.uniform(4.0, 10.0)
    if kind == 0:  # stripes along a random direction
        direction = rng.normal(size=3)
        if cls == FLOOR:
            direction[1] = 0
        direction /= np.linalg.norm(direction) + 1e-9
        return 0.5 + 0.5 * np.tanh(4 * np.sin(freq * points @ direction + rng.uniform(0, 6.3)))
    if kind == 1:  # checker
        cells = np.floor(points * freq / 2).astype(np.int64).sum(axis=1)
        return (cells % 2).astype(np.float64)
    value = np.zeros(len(points))  # a few random sinusoids: marble-like noise
    for octave in range(4):
        direction = rng.normal(size=3)
        f = freq * (1.8**octave) / 2
        value += np.sin(f * points @ direction + rng.uniform(0, 6.3)) / (1.6**octave)
    return 0.5 + 0.5 * np.tanh(value)


def _scribbles(
    rng: np.random.Generator,
    instance: np.ndarray,
    instance_class: list[int],
    usable: np.ndarray,
    width: int,
    fraction: float,
) -> np.ndarray:
    """ScribbleSup-style strokes: one random wiggly stroke per region, ``width`` px wide."""
    height, w = instance.shape
    scribble = np.full((height, w), IGNORE_INDEX, dtype=np.int64)
    areas = [int(((instance == k) & usable).sum()) for k in range(len(instance_class))]
    total = sum(math.sqrt(a) for a in areas) or 1.0
    budget = fraction * height * w / width  # stroke length in px summed over regions
    footprint = np.ones((width, width), dtype=bool)
    erode_by = width // 2 + 1
    for k, cls in enumerate(instance_class):
        region = (instance == k) & usable
        if areas[k] == 0:
            continue
        inner = ndimage.binary_erosion(region, iterations=erode_by)
        ys, xs = np.nonzero(inner)
        if len(ys) == 0:
            continue
        length = max(2, round(budget * math.sqrt(areas[k]) / total))
        start = int(rng.integers(len(ys)))
        y, x = float(ys[start]), float(xs[start])
        heading = rng.uniform(0, 2 * math.pi)
        stroke = np.zeros_like(region)
        stroke[ys[start], xs[start]] = True
        for _ in range(length):
            for _attempt in range(8):
                ny, nx = y + math.sin(heading), x + math.cos(heading)
                iy, ix = round(ny), round(nx)
                if 0 <= iy < height and 0 <= ix < w and inner[iy, ix]:
                    y, x = ny, nx
                    stroke[iy, ix] = True
                    heading += rng.normal(0, 0.25)
                    break
                heading = rng.uniform(0, 2 * math.pi)
            else:
                break
        stroke = ndimage.binary_dilation(stroke, structure=footprint) & region
        scribble[stroke] = cls
    return scribble


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0), mode="nearest")


def render_scene(
    rng: np.random.Generator,
    *,
    size: int = 64,
    domain: Domain = "synthetic",
    void_border: bool = True,
    scribble_width: int = 2,
    scribble_fraction: float = 0.03,
) -> dict[str, np.ndarray]:
    """Render one scene drawn from ``rng``.

    Args:
        rng: NumPy generator; the scene is a pure function of its state.
        size: output height and width in pixels.
        domain: ``"synthetic"`` or ``"real"``.
        void_border: mark a 1-px band of object pixels at instance borders as 255.
        scribble_width: stroke width in pixels.
        scribble_fraction: target fraction of pixels covered by scribbles (about).

    Returns:
        NumPy arrays: ``image`` (H, W, 3) uint8, ``label`` and ``scribble`` (H, W) int64 with 255
        = ignore, ``depth`` (H, W) float32 > 0 (camera z), ``normal`` (H, W, 3) float32 unit
        vectors in the camera frame, ``instance`` (H, W) int64 (0 floor, 1 wall, 2+ objects),
        ``intrinsics`` (3, 3) float64 pinhole matrix K (pixel centres at integer + 0.5).
    """
    real = domain == "real"
    H = W = size
    # Camera: pinhole with pose jitter. R maps camera-frame vectors (x right, y down, z forward)
    # to the world frame (y up).
    fov = math.radians(rng.uniform(55, 68))
    tan_half = math.tan(fov / 2)
    f = (W / 2) / tan_half
    cam = np.array([rng.uniform(-0.3, 0.3), rng.uniform(1.3, 1.9), 0.0])
    R = (
        _rot_y(math.radians(rng.uniform(-8, 8)))
        @ _rot_x(math.radians(rng.uniform(14, 24)))
        @ np.diag([1.0, -1.0, 1.0])
        @ _rot_z(math.radians(rng.uniform(-3, 3)))
    )
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    d_cam = np.stack([(u + 0.5 - W / 2) / f, (v + 0.5 - H / 2) / f, np.ones_like(u)], -1)
    d = d_cam.reshape(-1, 3) @ R.T  # t along d equals camera-frame depth because d_cam.z = 1
    o = np.broadcast_to(cam, d.shape)

    wall_z = rng.uniform(7.5, 9.5)
    wall_angle = math.radians(rng.uniform(-12, 12))
    wall_normal = np.array([math.sin(wall_angle), 0.0, -math.cos(wall_angle)])
    objects = _sample_objects(rng, cam[0], tan_half, wall_z)

    surfaces: list[tuple[int, Callable[..., Any], dict[str, Any]]] = [
        (FLOOR, lambda o, d, p: _plane(o, d, np.zeros(3), np.array([0.0, 1.0, 0.0])), {}),
        (WALL, lambda o, d, p: _plane(o, d, np.array([0.0, 0.0, wall_z]), wall_normal), {}),
    ] + [(p["cls"], _INTERSECT[p["cls"]], p) for p in objects]
    classes = [s[0] for s in surfaces]
    ts, ns = zip(*(fn(o, d, p) for _, fn, p in surfaces))
    t_all = np.stack(ts)  # (S, N)
    instance = t_all.argmin(axis=0)
    t = t_all[instance, np.arange(len(instance))]
    hit_any = np.isfinite(t)
    n_world = np.stack(ns)[instance, np.arange(len(instance))]
    n_world /= np.maximum(np.linalg.norm(n_world, axis=1, keepdims=True), 1e-12)
    t = np.where(hit_any, t, 0.0)
    points = o + t[:, None] * d

    # Lighting: directional light from the upper hemisphere (+ shadows from objects), ambient.
    elevation = math.radians(rng.uniform(30, 70))
    azimuth = rng.uniform(-math.pi * 0.8, math.pi * 0.8)
    light = np.array(
        [
            math.cos(elevation) * math.sin(azimuth),
            math.sin(elevation),
            -math.cos(elevation) * math.cos(azimuth),
        ]
    )
    shadow_o = points + 1e-3 * n_world
    shadow_d = np.broadcast_to(light, d.shape)
    shadowed = np.zeros(len(t), dtype=bool)
    for _, fn, p in surfaces[2:]:
        shadowed |= np.isfinite(fn(shadow_o, shadow_d, p)[0])
    lambert = np.clip(n_world @ light, 0, None) * ~shadowed
    ambient = rng.uniform(0.25, 0.4)

    colours = _surface_colours(rng, domain, classes)
    albedo = np.zeros((len(t), 3))
    for k, cls in enumerate(classes):
        mask = instance == k
        base = colours[k]
        if real and mask.any():
            pattern = _texture(rng, points[mask], cls)
            second = base * rng.uniform(0.35, 0.7) + rng.uniform(0, 0.2, size=3)
            albedo[mask] = pattern[:, None] * base + (1 - pattern[:, None]) * second
        else:
            albedo[mask] = base

    if real:
        light_colour = _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.15, 0.4), 1.0)
        ambient_colour = _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.1, 0.4), 1.0)
        view = -d / np.linalg.norm(d, axis=1, keepdims=True)
        reflect = 2 * (n_world @ light)[:, None] * n_world - light
        shininess = rng.uniform(8, 30)
        specular = rng.uniform(0.1, 0.4) * np.clip((reflect * view).sum(1), 0, None) ** shininess
        shade = ambient * ambient_colour + (1 - ambient) * lambert[:, None] * light_colour
        rgb = albedo * shade + (specular * ~shadowed)[:, None] * light_colour
    else:
        rgb = albedo * (ambient + (1 - ambient) * lambert)[:, None]
    rgb = rgb.reshape(H, W, 3)
    if real:
        rgb = _blur(rgb, rng.uniform(0.4, 0.9) * size / 64)
        radius2 = ((u + 0.5 - W / 2) ** 2 + (v + 0.5 - H / 2) ** 2) / (W / 2) ** 2
        rgb *= (1 - rng.uniform(0.2, 0.45) * radius2)[..., None]
        rgb = rgb ** rng.uniform(0.8, 1.2) * rng.uniform(0.85, 1.15, size=3)
        # auto-exposure: the coloured light and dark textures would otherwise give murky images
        rgb *= rng.uniform(0.38, 0.55) / max(float(rgb.mean()), 1e-3)
        rgb += rng.normal(0, rng.uniform(0.02, 0.05), size=rgb.shape)
    image = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)

    instance = instance.reshape(H, W)
    cls_map = np.asarray(classes)[instance]
    label = cls_map.astype(np.int64)
    usable = hit_any.reshape(H, W).copy()
    if void_border:
        differs = np.zeros((H, W), dtype=bool)
        differs[:, 1:] |= instance[:, 1:] != instance[:, :-1]
        differs[:, :-1] |= instance[:, :-1] != instance[:, 1:]
        differs[1:] |= instance[1:] != instance[:-1]
        differs[:-1] |= instance[:-1] != instance[1:]
        usable &= ~(differs & (instance >= 2))  # the band lies on the object side only
    label[~usable] = IGNORE_INDEX
    scribble = _scribbles(rng, instance, classes, usable, scribble_width, scribble_fraction)

    normal = (n_world @ R).reshape(H, W, 3)  # world -> camera frame
    normal[~hit_any.reshape(H, W)] = 0
    return {
        "image": image,
        "label": label,
        "scribble": scribble,
        "depth": t.reshape(H, W).astype(np.float32),
        "normal": normal.astype(np.float32),
        "instance": instance,
        "intrinsics": np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]]),
    }


_SHARED_CACHE: dict[tuple[object, ...], dict[int, dict[str, np.ndarray]]] = {}


class SyntheticScenes(Dataset):
    """Procedural ray-cast scenes with labels, scribbles, depth and normals (the built-in data).

    Each scene is a floor and a back wall seen by a jittered pinhole camera, with 2-5 primitives
    (spheres, boxes, cylinders, cones) resting on the floor and occluding each other, lit by a
    random directional light with shadows plus ambient light. Sample ``i`` of a split is a pure
    function of ``(seed, split, domain, i)``: each split and domain draws from its own NumPy
    ``SeedSequence`` stream, so splits never share scenes and source / target scenes are unpaired.

    Classes: 0 floor, 1 wall, 2 sphere, 3 box, 4 cylinder, 5 cone; 255 = void (1-px band on the
    object side of object borders when ``void_border=True``).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        domain: ``"synthetic"`` (flat colours, clean) or ``"real"`` (textures, shifted colours,
            coloured light, blur, vignetting, sensor noise).
        size: image height and width in pixels (>= 16).
        length: number of scenes; default 2000 for train, 200 for val and test.
        seed: base seed.
        scribble_width: scribble stroke width in pixels; default ``max(2, size // 32)``.
        scribble_fraction: target fraction of pixels covered by scribbles.
        void_border: put the 255 void band at object borders.
        cache: keep generated samples in memory (about 21 bytes per pixel: 86 kB per 64² scene),
            so later epochs are free. Each DataLoader worker holds its own cache.

    Example:
        >>> ds = SyntheticScenes("val", size=32, length=4)
        >>> s = ds[0]
        >>> tuple(s["image"].shape), s["label"].dtype, tuple(s["normal"].shape), len(ds)
        ((3, 32, 32), torch.int64, (3, 32, 32), 4)
    """

    num_classes: ClassVar[int] = 6
    class_names: ClassVar[tuple[str, ...]] = ("floor", "wall", "sphere", "box", "cylinder", "cone")
    palette: ClassVar[list[tuple[int, int, int]]] = [
        (128, 64, 128),
        (70, 70, 70),
        (220, 20, 60),
        (0, 60, 200),
        (107, 142, 35),
        (250, 170, 30),
    ]
    ignore_index: ClassVar[int] = IGNORE_INDEX

    def __init__(
        self,
        split: str = "train",
        *,
        domain: Domain = "synthetic",
        size: int = 64,
        length: int | None = None,
        seed: int = 0,
        scribble_width: int | None = None,
        scribble_fraction: float = 0.03,
        void_border: bool = True,
        cache: bool = True,
    ) -> None:
        name = "SyntheticScenes"
        if split not in _SPLITS:
            raise ValueError(f"{name}: split must be one of {sorted(_SPLITS)}; got {split!r}.")
        if domain not in _DOMAINS:
            raise ValueError(f"{name}: domain must be one of {sorted(_DOMAINS)}; got {domain!r}.")
        if not isinstance(size, int) or isinstance(size, bool) or size < 16:
            raise ValueError(f"{name}: size must be an int >= 16; got {size!r}.")
        if length is None:
            length = _DEFAULT_LENGTH[split]
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"{name}: length must be a positive int; got {length!r}.")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"{name}: seed must be a non-negative int; got {seed!r}.")
        if scribble_width is None:
            scribble_width = max(2, size // 32)
        if not isinstance(scribble_width, int) or scribble_width < 1:
            raise ValueError(f"{name}: scribble_width must be an int >= 1; got {scribble_width!r}.")
        if not 0 < scribble_fraction < 1:
            raise ValueError(
                f"{name}: scribble_fraction must be in (0, 1); got {scribble_fraction!r}."
            )
        self.split = split
        self.domain = domain
        self.size = size
        self.length = length
        self.seed = seed
        self.scribble_width = scribble_width
        self.scribble_fraction = scribble_fraction
        self.void_border = void_border
        self.cache = cache
        # Scenes depend only on these settings (not on ``length``), so every instance with the
        # same ones shares one process-wide cache: a study's many runs render each scene once.
        key = (seed, split, domain, size, void_border, scribble_width, scribble_fraction)
        self._cache: dict[int, dict[str, np.ndarray]] = (
            _SHARED_CACHE.setdefault(key, {}) if cache else {}
        )

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return (
            f"SyntheticScenes(split={self.split!r}, domain={self.domain!r}, size={self.size}, "
            f"length={self.length}, seed={self.seed})"
        )

    def render(self, index: int) -> dict[str, np.ndarray]:
        """Render scene ``index`` as NumPy arrays (see :func:`render_scene`); no cache."""
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], _DOMAINS[self.domain], index])
        return render_scene(
            rng,
            size=self.size,
            domain=self.domain,
            void_border=self.void_border,
            scribble_width=self.scribble_width,
            scribble_fraction=self.scribble_fraction,
        )

    def __getitem__(self, index: int) -> Sample:
        """Sample ``index`` as a dict with the keys of :mod:`denseloss.data.sample`.

        Returns:
            ``image`` (3, H, W) float32 in [0, 1] (8-bit quantised, as a PNG would be), ``label``
            and ``scribble`` (H, W) int64 with 255 = ignore, ``depth`` (1, H, W) float32 > 0,
            ``normal`` (3, H, W) float32 unit vectors (camera frame), ``valid`` (H, W) bool all
            True, ``index`` () int64. Fresh tensors each call: mutating them never alters the cache.
        """
        if isinstance(index, torch.Tensor):
            index = int(index)
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(
                f"SyntheticScenes.__getitem__: index must be an int; got {type(index).__name__}."
            )
        index = int(index)
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(
                f"SyntheticScenes.__getitem__: index must be in [0, {self.length}); got {index}."
            )
        arrays = self._cache.get(index)
        if arrays is None:
            rendered = self.render(index)
            arrays = {
                "image": rendered["image"],
                "label": rendered["label"].astype(np.uint8),
                "scribble": rendered["scribble"].astype(np.uint8),
                "depth": rendered["depth"],
                "normal": rendered["normal"],
            }
            if self.cache:
                self._cache[index] = arrays
        return {
            "image": torch.from_numpy(arrays["image"]).permute(2, 0, 1).float().div_(255),
            "label": torch.from_numpy(arrays["label"].astype(np.int64)),
            "scribble": torch.from_numpy(arrays["scribble"].astype(np.int64)),
            "depth": torch.from_numpy(arrays["depth"].copy())[None],
            "normal": torch.from_numpy(arrays["normal"]).permute(2, 0, 1).contiguous(),
            "valid": torch.ones(self.size, self.size, dtype=torch.bool),
            "index": torch.tensor(index, dtype=torch.int64),
        }


def build_builtin(root: str | None = None, split: str = "train", **kw: Any) -> SyntheticScenes:
    """``DATASETS["builtin"]`` factory: ``SyntheticScenes(split, **kw)``; ``root`` is unused."""
    del root  # the built-in data set needs no files
    return SyntheticScenes(split, **kw)
