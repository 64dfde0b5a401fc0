"""SynthRAD2023 Task 1 brain trees for the tests: registered MR, CT and mask per patient."""

from __future__ import annotations

import nibabel as nib
import numpy as np


def phantom_task1(root, ids=("1BA001", "1BA002", "1BB003", "1BC004")):
    """A SynthRAD2023-like Task1/brain tree from the demo head phantom: registered MR/CT/mask on one grid.

    As in the release: both images on the CT's 1 mm grid (here LAS, an oblique-free 1 mm box
    around the cranium), the MR a T1 with its own scale, the mask a dilated body outline.
    """
    from scipy import ndimage as ndi

    from medcyclegan.demo import anatomy

    anat = anatomy.head_anatomy()
    brain = root / "Task1" / "brain"
    shape = (176, 208, 72)
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])  # LAS
    affine[:3, 3] = [87.5, -103.5, -30.0]
    for k, pid in enumerate(ids):
        rng = np.random.default_rng(k)
        pose = anatomy.Pose(anatomy.random_scale(rng), anatomy.random_rotation(rng), (0.0, 0.0, 0.0))
        ct = np.clip(np.rint(anatomy.render(anat.ct, affine, shape, pose, default=-1000.0)), -1024, 3071)
        mr = anatomy.render(anat.t1, affine, shape, pose) * (3.0 + 0.5 * k) + rng.normal(0, 2.0, shape)
        mask = ndi.binary_dilation(ct > -500, iterations=3)
        p = brain / pid
        p.mkdir(parents=True)
        for name, data in (
            ("ct", ct.astype(np.int16)),
            ("mr", np.clip(mr, 0, None).astype(np.float32)),
            ("mask", mask),
        ):
            img = nib.Nifti1Image(data.astype(np.uint8) if name == "mask" else data, affine)
            img.set_qform(affine, 1)
            img.set_sform(affine, 1)
            nib.save(img, str(p / f"{name}.nii.gz"))
    return brain
