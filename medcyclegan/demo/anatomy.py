"""Head phantom anatomy for the demo data, derived from nilearn's offline MNI152 2009 files.

Why: the demo must exercise the real ingest code (orientation handling, HU scaling, masking,
resampling) on heads that look like heads, without downloading anything.  nilearn ships the
ICBM152 2009a template T1 and its grey/white-matter probability maps (1 mm, 197x233x189) inside
the wheel.  Its T1 is *skull-stripped* (zero outside the brain), so everything outside the brain
(subarachnoid CSF, skull with inner/outer table and diploe, scalp with skin/fat/galea, face with
orbits, eyes, nasal cavity and sinuses, mandible, ears, neck with vertebrae, airway and spinal
cord) is built here from signed-distance fields and simple analytic shapes placed relative to
the real brain.

The anatomy is built once per process (``head_anatomy()`` is ``lru_cache``d; the shapes come from
``shapes.py``) on a 1 mm RAS grid that extends the MNI box downwards (neck) and forwards (face).
It provides one float32 SimpleITK image per rendered quantity:

* ``ct``   : Hounsfield units (air -1000, fat -90, CSF 8, WM 28, GM 38, soft tissue 40-45,
             diploe ~600-900, cortical bone ~1300-1900, teeth ~2400)
* ``t1``   : T1w-like intensity on the MNI template's 0-255 scale (brain = the real template)
* ``perf`` : PET perfusion/delivery map (grey matter high)
* ``ret_wm``, ``ret_ctx`` : PET late-retention maps (white-matter nonspecific, cortical specific)

``render()`` resamples any of them with a subject ``Pose`` (anisotropic scale, rotation,
translation) onto an output grid given by a NIfTI-style RAS affine, using ``sitk.Resample`` with
an affine transform.  Rendering is deterministic (linear interpolation, no random state).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcyclegan.demo import shapes

# Grid of the phantom in MNI/RAS millimetres (1 mm).  MNI box: x -98..98, y -134..98, z -72..116.
GRID_X = (-98, 98)
GRID_Y = (-134, 126)
GRID_Z = (-150, 116)
#: MNI point that a pose places at its ``center`` (middle of the cranium incl. scalp).
HEAD_CENTER_MNI = np.array([0.0, -17.0, 10.0])
#: The MNI152 template head is ~8-10 % larger than an average adult head.
BASE_SCALE = 0.92

# Label codes of the phantom.
AIR, SKIN, FAT, SOFT, CORTICAL, DIPLOE, CSF, BRAIN, EYE, LENS, CARTILAGE, CORD, TEETH, CALC, MARROW = range(15)

#                     air    skin  fat  soft cortical diploe csf brain eye lens cart cord teeth calc marrow
_CT_HU = np.array([-1000.0, 45, -90, 42, 1650, 750, 8, 0, 12, 75, 110, 32, 2400, 180, 350], np.float32)
_T1 = np.array([0.0, 110, 235, 75, 8, 150, 42, 0, 30, 70, 60, 150, 5, 20, 140], np.float32)
_PERF = np.array([0.0, 0.12, 0.03, 0.12, 0.04, 0.06, 0.03, 0, 0.05, 0.02, 0.05, 0.3, 0.0, 0.05, 0.08], np.float32)
_RET_SOFT = np.array([0.0, 0.05, 0.02, 0.05, 0.03, 0.05, 0.01, 0, 0.02, 0.0, 0.02, 0.5, 0.0, 0.0, 0.05], np.float32)


def mni_dir() -> Path:
    """Folder of the MNI152 2009 files shipped inside nilearn (no network needed)."""
    import importlib.util

    spec = importlib.util.find_spec("nilearn")  # locate without importing (nilearn imports sklearn)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("nilearn is needed for the demo data (it ships the MNI152 files)")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def _load_mni(name: str) -> np.ndarray:
    import nibabel as nib

    img = nib.load(str(mni_dir() / f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz"))
    assert np.allclose(img.affine[:3, :3], np.eye(3)) and np.allclose(img.affine[:3, 3], [-98, -134, -72])
    return np.asarray(img.dataobj)


@dataclass(frozen=True)
class Anatomy:
    """Phantom volumes (SimpleITK float32 images, LPS physical space = MNI mm) and head points."""

    ct: object
    t1: object
    perf: object
    ret_wm: object
    ret_ctx: object
    #: (N, 3) RAS points on the outer skin surface (MNI mm), for placing heads in a field of view.
    surface: np.ndarray


#: shape of the phantom grid (x, y, z) and the z index of the MNI box's bottom in it
SHAPE = (GRID_X[1] - GRID_X[0] + 1, GRID_Y[1] - GRID_Y[0] + 1, GRID_Z[1] - GRID_Z[0] + 1)
OZ = -72 - GRID_Z[0]
ORIGIN = (GRID_X[0], GRID_Y[0], GRID_Z[0])
#: height of the eye centres (orbital roof at ~-20 in MNI)
EYE_Z = -44.0


@functools.lru_cache(maxsize=1)
def head_anatomy() -> Anatomy:
    """Build the phantom (cached per process): label the tissues in the order in which later
    structures win over earlier ones, then give every label its CT, T1 and PET values."""
    t1_mni, gm, wm = (_embed(_load_mni(name)) for name in ("t1", "gm", "wm"))
    gm /= np.float32(255.0)
    wm /= np.float32(255.0)
    brain = t1_mni > 0
    x, y, z = _grid_coords()
    sd_ic, thick, sd_cranium, fs_c = _cranial_fields(brain, x, y, z)
    sd_head = _head_distance(sd_cranium)
    p = shapes.Painter(_soft_tissue_labels(sd_head), SHAPE, ORIGIN)
    for sx in (-1, 1):  # ears: cartilage core
        p.ellipsoid((78.0 * sx, -18.0, -30.0), (2.0, 11.0, 24.0), CARTILAGE)
    cy = _paint_neck(p, brain)
    _paint_orbits_and_sinuses(p)
    _paint_jaw(p)
    _paint_skull(p, sd_ic, thick, sd_head, (x, y, z), cy, fs_c)  # after the face: orbital roofs, skull base win
    _paint_intracranial(p, sd_ic, brain)
    volumes = _tissue_values(p.label, gm, wm, t1_mni, y, z)
    return Anatomy(**{k: _to_sitk(v) for k, v in volumes.items()}, surface=_skin_surface(sd_head))


def _embed(a: np.ndarray) -> np.ndarray:
    """An MNI-box volume placed in the (larger) phantom grid, zero elsewhere (float32)."""
    out = np.zeros(SHAPE, np.float32)
    out[:, : a.shape[1], OZ : OZ + a.shape[2]] = a
    return out


def _grid_coords():
    """Broadcastable float32 RAS coordinates (mm) of the grid's x, y and z axes."""
    x = (np.arange(SHAPE[0], dtype=np.float32) + GRID_X[0]).reshape(-1, 1, 1)
    y = (np.arange(SHAPE[1], dtype=np.float32) + GRID_Y[0]).reshape(1, -1, 1)
    z = (np.arange(SHAPE[2], dtype=np.float32) + GRID_Z[0]).reshape(1, 1, -1)
    return x, y, z


def _cranial_fields(brain, x, y, z):
    """Signed distance to the dura (``sd_ic``, negative inside), skull thickness, signed distance
    to the cranial scalp surface (all on the 1 mm grid) and the frontal sinus centre.

    Intracranial space: closing (r = 10 mm) of the brain plus 2.5 mm of CSF, at 2 mm. Skull
    ~6.5 mm: thin temporal squama, thicker occiput and frontal bone (which holds the sinus);
    scalp thicker at the temples (temporalis muscle).
    """
    coarse = brain[::2, ::2, ::2].copy()
    closed = shapes.signed_distance(shapes.signed_distance(coarse, 2.0) <= 10.0, 2.0) <= -10.0
    closed |= coarse
    bottom = (OZ + 4) // 2
    closed[:, :, :bottom] &= coarse[:, :, :bottom]  # keep the medulla thin below the cerebellum
    sd_ic = shapes.signed_distance(closed, 2.0) - 2.5
    del coarse, closed

    cshape = sd_ic.shape
    xc, yc, zc = x[::2], y[:, ::2], z[:, :, ::2]
    noise = shapes.upsample(shapes.smooth_noise((25, 33, 34), 1234, 1.5), cshape)
    temporal = np.exp(-(((zc + 12.0) / 24.0) ** 2)) * (1.0 / (1.0 + np.exp(-(np.abs(xc) - 52.0) / 4.0)))
    occ = 1.0 / (1.0 + np.exp((yc + 70.0) / 8.0))
    thick = 6.3 + 0.9 * noise - 3.2 * temporal + 1.5 * occ
    # frontal sinus needs a thick frontal bone
    col = sd_ic[-GRID_X[0] // 2, :, (-14 - GRID_Z[0]) // 2]
    fs_c = (0.0, float(yc.ravel()[np.nonzero(col < 0)[0].max()]) + 8.0, -14.0)
    thick += 7.0 * np.exp(-((xc / 18.0) ** 2 + ((yc - fs_c[1]) / 10.0) ** 2 + ((zc - fs_c[2]) / 14.0) ** 2))
    scalp = 5.5 + 0.6 * noise + 7.0 * temporal
    sd_ic, thick, scalp = (shapes.upsample(v, SHAPE) for v in (sd_ic, thick, scalp))
    return sd_ic, thick, sd_ic - thick - scalp, fs_c


def _head_distance(sd_head: np.ndarray) -> np.ndarray:
    """Signed distance to the skin: the cranial scalp surface ``sd_head`` (changed in place) in a
    smooth union with face and jaw, nose, ears and neck."""
    p = shapes.Painter(None, SHAPE, ORIGIN)
    ze = EYE_Z

    def union(c, r, k):
        sl, (xx, yy, zz) = p.box(np.subtract(c, r) - k, np.add(c, r) + k)
        sd_head[sl] = shapes.smin(sd_head[sl], shapes.ellipsoid_sdf(xx, yy, zz, c, r), k)

    union((0.0, 30.0, ze - 38.0), (60.0, 56.0, 68.0), 14.0)  # face and jaw
    union((0.0, 84.0, ze - 14.0), (10.0, 16.0, 24.0), 6.0)  # nose
    for sx in (-1, 1):
        union((78.0 * sx, -18.0, -30.0), (6.0, 14.0, 28.0), 4.0)  # ears
    sl, (xx, yy, zz) = p.box((-80, -100, GRID_Z[0]), (80, 60, 0))
    neck_r = np.sqrt((xx / 54.0) ** 2 + ((yy + 22.0) / 56.0) ** 2) * 54.0 - 54.0
    neck = np.where(zz < -40.0, neck_r, np.maximum(neck_r, zz + 40.0))
    sd_head[sl] = shapes.smin(sd_head[sl], neck, 20.0)
    return sd_head


def _soft_tissue_labels(sd_head: np.ndarray) -> np.ndarray:
    """Labels of the head's soft tissue: skin (1.8 mm), fat (to 4.5 mm), soft tissue inside."""
    label = np.zeros(SHAPE, np.uint8)
    depth = -sd_head
    label[depth > 0] = SOFT
    label[(depth > 0) & (depth <= 4.5)] = FAT
    label[(depth > 0) & (depth <= 1.8)] = SKIN
    return label


def _paint_neck(p: shapes.Painter, brain: np.ndarray) -> float:
    """Vertebral column, spinal canal and cord, airway; returns the medulla centre's y."""
    label, ze = p.label, EYE_Z
    bz = brain[:, :, OZ + 1]
    cy = float(np.nonzero(bz)[1].mean() + GRID_Y[0])  # medulla centre (y) at the box bottom
    sl, (xx, yy, zz) = p.box((-40, cy - 60, GRID_Z[0]), (40, cy + 40, -64))
    sub = label[sl]
    r_canal = np.sqrt(xx**2 + (yy - cy) ** 2)
    vb = np.sqrt((xx / 13.0) ** 2 + ((yy - (cy + 24.0)) / 10.0) ** 2)  # vertebral bodies
    disc = (np.mod(zz + 300.0, 16.0) < 3.0) & (zz < -84.0)
    arch = (r_canal > 8.0) & (r_canal < 13.0) & (yy < cy + 6) & (zz < -74.0)
    spinous = (np.abs(xx) < 3.0) & (yy < cy - 10) & (yy > cy - 32) & (zz < -74.0) & (np.mod(zz + 300.0, 16.0) > 5.0)
    body = (vb <= 1.0) & (zz < -76.0)
    sub[(arch | spinous | body) & (sub != AIR)] = MARROW
    sub[((vb > 0.8) & (vb <= 1.0) & (zz < -76.0)) | ((arch | spinous) & (np.abs(r_canal - 10.5) > 1.2))] = CORTICAL
    sub[body & disc] = SOFT
    sub[(r_canal <= 8.0) & (sub != AIR)] = CSF
    sub[(r_canal <= 5.0) & (zz < -70.0)] = CORD
    air_c = np.sqrt((xx / 11.0) ** 2 + ((yy - (cy + 48.0)) / 8.0) ** 2) <= 1.0  # pharynx/larynx
    sub[air_c & (zz < ze - 40.0)] = AIR
    return cy


def _paint_orbits_and_sinuses(p: shapes.Painter) -> None:
    """Orbits with fat, eyes and lenses; maxillary sinuses; nasal cavity with septum and nostrils;
    sphenoid sinus."""
    label, ze = p.label, EYE_Z
    for sx in (-1, 1):
        oc = (30.0 * sx, 46.0, ze)
        p.ellipsoid(
            oc, (17.0, 27.0, 16.0), CORTICAL, shell=1.8, where=lambda x, y, z, sl: (y < 64.0) & (label[sl] != AIR)
        )
        p.ellipsoid(oc, (17.0, 27.0, 16.0), FAT)
        p.ellipsoid((32.0 * sx, 58.0, ze), (12.0, 12.0, 12.0), EYE)
        p.ellipsoid((32.0 * sx, 67.5, ze), (4.5, 2.0, 4.5), LENS)
        mc = (27.0 * sx, 44.0, ze - 30.0)
        p.ellipsoid(mc, (14.0, 17.0, 15.0), CORTICAL, shell=2.0)
        p.ellipsoid(mc, (14.0, 17.0, 15.0), AIR)
    nc = (0.0, 52.0, ze - 12.0)
    sl, (xx, yy, zz) = p.box((-16, 20, ze - 40), (16, 86, ze + 18))
    sup = (np.abs(xx) / 11.0) ** 2.5 + (np.abs(yy - nc[1]) / 30.0) ** 2.5 + (np.abs(zz - nc[2]) / 24.0) ** 2.5
    sup_w = (np.abs(xx) / 13.5) ** 2.5 + (np.abs(yy - nc[1]) / 32.0) ** 2.5 + (np.abs(zz - nc[2]) / 26.5) ** 2.5
    sub = label[sl]
    sub[(sup_w <= 1.0) & (sup > 1.0) & (yy < 74.0)] = CORTICAL
    sub[sup <= 1.0] = AIR
    sub[(sup <= 1.0) & (np.abs(xx) < 1.0)] = CARTILAGE  # septum
    # nostrils
    sub[(((np.abs(xx) - 5.0) / 3.5) ** 2 + ((yy - 88.0) / 10.0) ** 2 + ((zz - (ze - 30.0)) / 5.0) ** 2) <= 1.0] = AIR
    p.ellipsoid((0.0, 18.0, ze + 6.0), (12.0, 10.0, 9.0), CORTICAL, shell=1.8)  # sphenoid sinus
    p.ellipsoid((0.0, 18.0, ze + 6.0), (12.0, 10.0, 9.0), AIR)


def _paint_jaw(p: shapes.Painter) -> None:
    """Hard palate and upper teeth; the mandible (a polyline of ramus and body, rasterised and
    thickened with an anisotropic distance map) with its lower teeth."""
    from scipy import ndimage as ndi

    label, ze = p.label, EYE_Z
    sl, (xx, yy, zz) = p.box((-40, 0, ze - 62), (40, 90, ze - 40))
    sub = label[sl]
    arch_r = np.sqrt((xx / 26.0) ** 2 + ((yy - 30.0) / 42.0) ** 2)
    sub[(arch_r <= 1.0) & (yy > 30.0) & (np.abs(zz - (ze - 45.0)) <= 2.0)] = CORTICAL
    upper = (np.abs(arch_r - 0.93) < 0.09) & (yy > 22.0) & (zz < ze - 47.0) & (zz > ze - 57.0)
    sub[upper] = TEETH
    t = np.linspace(-1.0, 1.0, 121)
    body_pts = np.stack(
        [
            46.0 * np.sin(t * np.pi / 2.0),
            -6.0 + 78.0 * np.cos(t * np.pi / 2.0) ** 1.4,
            ze - 84.0 - 14.0 * np.cos(t * np.pi / 2.0),
        ],
        1,
    )
    ramus = []
    for sx in (-1, 1):
        s = np.linspace(0.0, 1.0, 40)[:, None]
        ramus.append((1 - s) * np.array([46.0 * sx, -6.0, ze - 84.0]) + s * np.array([50.0 * sx, -10.0, ze - 22.0]))
    pts = np.concatenate([body_pts] + ramus)
    sl, (xx, yy, zz) = p.box(pts.min(0) - 14, pts.max(0) + 14)
    line = np.zeros(label[sl].shape, bool)
    idx = np.round(pts - [xx.min(), yy.min(), zz.min()]).astype(int)
    ok = np.all((idx >= 0) & (idx < line.shape), axis=1)
    line[tuple(idx[ok].T)] = True
    d = ndi.distance_transform_edt(~line, sampling=(1.0, 1.0, 0.45))
    sub = label[sl]
    jaw = (d <= 5.5) & (sub != AIR) & (zz > GRID_Z[0] + 6)  # the bottom slices are extrapolated
    sub[jaw] = MARROW
    sub[jaw & (d > 3.8)] = CORTICAL
    top = ze - 84.0 - 14.0 * np.cos(np.arcsin(np.clip(xx / 46.0, -1, 1))) + 10.0
    lower_teeth = (d <= 4.0) & (zz > top) & (zz < top + 9.0) & (yy > 8.0)
    sub[lower_teeth & (sub != AIR)] = TEETH


def _paint_skull(p: shapes.Painter, sd_ic, thick, sd_head, coords, cy: float, fs_c) -> None:
    """The skull between dura and scalp (diploe between cortical tables, foramen magnum open),
    then the air of the frontal sinus and of the mastoid cells inside it."""
    x, y, z = coords
    label = p.label
    cut = (z > -70.0) & ~((z < -56.0) & (np.sqrt(x**2 + (y - cy) ** 2) < 17.0))  # foramen magnum
    shell = (sd_ic > 0) & (sd_ic <= thick) & cut & (sd_head < -1.0)
    inner = sd_ic <= 1.6
    outer = sd_ic >= thick - 1.9
    label[shell] = DIPLOE
    label[shell & (inner | outer | (thick < 4.2))] = CORTICAL
    del inner, outer, cut
    p.ellipsoid(
        fs_c,
        (15.0, 5.5, 11.0),
        AIR,
        where=lambda x, y, z, sl: shell[sl] & (sd_ic[sl] > 1.2) & (sd_ic[sl] < thick[sl] - 1.5),
    )
    for sx in (-1, 1):  # mastoid air cells: small air pockets in the bone behind the ears
        p.ellipsoid(
            (60.0 * sx, -40.0, -52.0),
            (8.0, 9.0, 9.0),
            AIR,
            where=lambda x, y, z, sl: shell[sl] & (np.mod(x + y + z, 4.0) < 2.0),
        )


def _paint_intracranial(p: shapes.Painter, sd_ic, brain) -> None:
    """CSF inside the dura, the brain in it, and a calcified pineal gland."""
    label = p.label
    ic = sd_ic <= 0
    ic[:, :, : OZ + 2] &= brain[:, :, : OZ + 2] | (label[:, :, : OZ + 2] == CSF)
    label[ic] = CSF
    label[ic & brain] = BRAIN
    del ic
    p.ellipsoid((0.0, -30.0, 3.0), (2.5, 3.0, 2.5), CALC, where=lambda x, y, z, sl: label[sl] == BRAIN)


def _tissue_values(label, gm, wm, t1_mni, y, z) -> dict[str, np.ndarray]:
    """Per-label CT, T1 and PET values; inside the brain from the grey/white-matter fractions
    (and the real template T1), with textured bone."""
    from scipy import ndimage as ndi

    isbrain = np.nonzero(label == BRAIN)
    g, w = gm[isbrain], wm[isbrain]
    frac_sum = np.maximum(g + w, 1.0)
    g /= frac_sum
    w /= frac_sum
    c = 1.0 - g - w

    ct = _CT_HU[label]
    ct[isbrain] = 8.0 * c + 38.0 * g + 28.0 * w
    bone_noise = shapes.smooth_noise((50, 66, 68), 4321, 2.0)
    bone_idx = np.nonzero((label == CORTICAL) | (label == DIPLOE))
    bn = ndi.map_coordinates(bone_noise, [bone_idx[0] / 4.0, bone_idx[1] / 4.0, bone_idx[2] / 4.0], order=1)
    is_cort = label[bone_idx] == CORTICAL
    ct[bone_idx] = np.where(is_cort, 1600.0 + 220.0 * bn, 760.0 + 110.0 * bn)
    del bone_idx, bn, is_cort, bone_noise

    t1 = _T1[label]
    t1[isbrain] = t1_mni[isbrain]

    perf = _PERF[label]
    perf[isbrain] = 1.0 * g + 0.3 * w + 0.03 * c
    ret_wm = _RET_SOFT[label]
    ret_wm[isbrain] = w
    by, bz = y.ravel()[isbrain[1]], z.ravel()[isbrain[2]]
    cereb = 1.0 / (1.0 + np.exp((bz + 30.0) / 4.0)) * (1.0 / (1.0 + np.exp((by + 45.0) / 4.0)))
    ret_ctx = np.zeros(SHAPE, np.float32)
    ret_ctx[isbrain] = g * (1.0 - 0.85 * cereb)  # cerebellar cortex: PET reference region
    return {"ct": ct, "t1": t1, "perf": perf, "ret_wm": ret_wm, "ret_ctx": ret_ctx}


def _skin_surface(sd_head: np.ndarray) -> np.ndarray:
    """(N, 3) RAS points on the skin, subsampled deterministically (for field-of-view placement)."""
    sidx = np.argwhere(np.abs(sd_head[::2, ::2, :]) < 0.7) * [2, 2, 1]
    return (sidx + [GRID_X[0], GRID_Y[0], GRID_Z[0]]).astype(np.float64)


def _to_sitk(a: np.ndarray):
    """Array (x, y, z) in RAS -> SimpleITK float32 image in LPS physical space."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(a.transpose(2, 1, 0), dtype=np.float32))
    img.SetSpacing((1.0, 1.0, 1.0))
    img.SetOrigin((-float(GRID_X[0]), -float(GRID_Y[0]), float(GRID_Z[0])))
    img.SetDirection((-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))
    return img


# ------------------------------------------------------------------------------------------
# Poses and rendering
# ------------------------------------------------------------------------------------------


def rotation_matrix(pitch_deg: float, roll_deg: float, yaw_deg: float) -> np.ndarray:
    """RAS rotation: pitch about x (L-R, nodding), roll about y (A-P), yaw about z (S-I)."""
    a, b, c = np.deg2rad([pitch_deg, roll_deg, yaw_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Pose:
    """Maps MNI (RAS mm) to world (RAS mm): world = R @ diag(scale) @ (mni - HEAD_CENTER_MNI) + center."""

    scale: tuple[float, float, float]
    rotation: np.ndarray  # 3x3
    center: tuple[float, float, float]

    def to_world(self, mni_pts: np.ndarray) -> np.ndarray:
        return (np.asarray(mni_pts) - HEAD_CENTER_MNI) * np.asarray(self.scale) @ self.rotation.T + self.center

    def moved(self, center) -> Pose:
        return Pose(self.scale, self.rotation, tuple(float(v) for v in center))


def random_scale(rng: np.random.Generator) -> tuple[float, float, float]:
    """Subject anatomy: overall ~0.9-1.1 relative size (x BASE_SCALE), +-3 % per axis."""
    s = BASE_SCALE * rng.uniform(0.9, 1.08)
    return tuple(float(s * rng.uniform(0.97, 1.03)) for _ in range(3))


def random_rotation(rng: np.random.Generator, pitch=10.0, yaw=6.0, roll=3.0) -> np.ndarray:
    return rotation_matrix(rng.uniform(-pitch, pitch), rng.uniform(-roll, roll), rng.uniform(-yaw, yaw))


def render(volume, affine_ras: np.ndarray, shape, pose: Pose, default: float = 0.0) -> np.ndarray:
    """Resample a phantom volume with ``pose`` onto the grid ``affine_ras``/``shape``.

    ``affine_ras`` is a NIfTI-style voxel (i, j, k) -> RAS mm matrix (rotation/zoom, no shear).
    Returns a float32 array indexed (i, j, k).
    """
    import SimpleITK as sitk

    flip = np.diag([-1.0, -1.0, 1.0])
    a_lps = flip @ np.asarray(affine_ras, float)[:3, :4]
    spacing = np.linalg.norm(a_lps[:, :3], axis=0)
    direction = a_lps[:, :3] / spacing
    ref = sitk.Image([int(v) for v in shape], sitk.sitkUInt8)
    ref.SetSpacing([float(v) for v in spacing])
    ref.SetOrigin([float(v) for v in a_lps[:, 3]])
    ref.SetDirection([float(v) for v in direction.ravel()])
    # output (world, LPS) -> MNI (LPS):  q = F S^-1 R^T F p + F (c0 - S^-1 R^T c)
    s_inv = np.diag(1.0 / np.asarray(pose.scale))
    m = s_inv @ pose.rotation.T
    mat = flip @ m @ flip
    trans = flip @ (HEAD_CENTER_MNI - m @ np.asarray(pose.center))
    tf = sitk.AffineTransform(3)
    tf.SetMatrix([float(v) for v in mat.ravel()])
    tf.SetTranslation([float(v) for v in trans])
    # nearest-neighbour extrapolation continues the neck below the phantom grid (all other
    # borders of the grid are air); ``default`` is then only used where nothing is defined
    out = sitk.Resample(volume, ref, tf, sitk.sitkLinear, float(default), sitk.sitkFloat32, True)
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)
