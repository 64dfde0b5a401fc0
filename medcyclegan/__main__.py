"""Command line: ``python -m medcyclegan predict --model DIR --input mr.nii.gz --output sct.nii.gz``,
and ``python -m medcyclegan locate REF|FILE ...``, which finds the files a pseudonymous reference
of the workflow's outputs (``VOLUME/f-<hex>``) stands for.

Applies a trained model to one MR or PET NIfTI or DICOM series that need not come from the workflow: the volume goes
through the workflow's own ingest and preprocessing, with the settings stored in the model folder
(``preprocessing.json``), is translated slice by slice, and the synthetic CT (HU, int16) is
written on the input's own voxel grid (NIfTI) and/or as a DICOM CT series for a planning system.
An input the workflow would reject is refused with its reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medcyclegan", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser(
        "predict",
        help="synthetic CT from one MR/PET NIfTI or DICOM series",
        description="Synthetic CT from one MR or PET NIfTI or DICOM series: NIfTI with the input's grid, "
        "and/or a DICOM CT series.",
    )
    pr.add_argument("--model", required=True, help="exported model folder, e.g. results/mr2ct/model")
    pr.add_argument(
        "--input",
        required=True,
        help="MR or PET NIfTI (.nii or .nii.gz; a dynamic 4D PET is summed), or a folder of DICOM files "
        "(one series, or a study: the T1-weighted series is chosen)",
    )
    pr.add_argument("--output", default=None, help="synthetic CT NIfTI to write")
    pr.add_argument(
        "--output-dicom",
        default=None,
        metavar="DIR",
        help="also (or only) write the synthetic CT as a DICOM CT series in DIR, for a planning system; for a "
        "DICOM input it carries the input's patient, study and frame of reference",
    )
    pr.add_argument(
        "--full-head",
        action="store_true",
        help="translate every slice that holds head, also outside the cranial range the model was trained on",
    )
    pr.add_argument("--patient-id", default=None, help="PatientID of the DICOM series of a NIfTI input")
    pr.add_argument("--patient-name", default=None, help="PatientName of the DICOM series of a NIfTI input")
    pr.add_argument(
        "--preprocessing",
        default=None,
        help="preprocessing record JSON to use instead of MODEL/preprocessing.json",
    )
    pr.add_argument("--tracer", default=None, help="PET tracer when neither file name nor sidecar tells it (4D PET)")
    pr.add_argument("--batch-size", type=int, default=8, help="slices per generator call")
    pr.add_argument(
        "--no-flip-average",
        dest="flip_average",
        action="store_false",
        help="translate each slice once (default: average with its left-right mirror image, as the workflow does)",
    )
    pr.add_argument("--threads", type=int, default=None, help="CPU threads for TensorFlow")
    lo = sub.add_parser(
        "locate",
        help="the files that references such as CQ500-CT-3/f-1a2b3c4d5e stand for",
        description="Print the path of each file or folder that a pseudonymous reference (VOLUME/f-<hex>, as "
        "written in rejected.csv, fixes.csv, discovery.csv, info JSONs and logs) stands for, by recomputing the "
        "keyed hashes on this machine. Give references, or files that contain them. Prints to the console only.",
    )
    lo.add_argument("refs", nargs="+", help="references, or files (e.g. results/qc/rejected.csv) holding them")
    lo.add_argument(
        "--configfile",
        action="append",
        default=None,
        help="the workflow config(s) the run used (default: config.yaml); later files override earlier ones",
    )
    return p


def _locate(args) -> int:
    from pathlib import Path

    import yaml

    from medcyclegan.config.validation import ConfigError, deep_update, validate_config
    from medcyclegan.demo import volume_ids
    from medcyclegan.workflow.locate import locate

    config: dict = {}
    for path in args.configfile or ["config.yaml"]:
        deep_update(config, yaml.safe_load(Path(path).read_text()) or {})
    try:
        config = validate_config(config, source=" + ".join(args.configfile or ["config.yaml"]))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    texts = [Path(r).read_text(errors="replace") if Path(r).is_file() else r for r in args.refs]
    results = locate(texts, config, f"{config['results_dir']}/demo", lambda m: volume_ids(config["demo"], m))
    if not results:
        print("no reference (VOLUME/f-<hex>) in the arguments", file=sys.stderr)
    for ref, paths in results:
        for path in paths or ["(not found: other data folders or privacy.id_key than the run's?)"]:
            print(f"{ref}\t{path}")
    return 0 if all(paths for _, paths in results) else 1


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "locate":
        return _locate(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.command == "predict":
        from medcyclegan.errors import BadInput
        from medcyclegan.inference.predict import predict
        from medcyclegan.inference.runtime import configure_tensorflow

        if args.output is None and args.output_dicom is None:
            print("error: give --output FILE.nii.gz, --output-dicom DIR, or both", file=sys.stderr)
            return 2
        configure_tensorflow(args.threads)
        try:
            info = predict(
                args.model,
                args.input,
                args.output,
                output_dicom=args.output_dicom,
                full_head=args.full_head,
                patient={"patient_id": args.patient_id, "patient_name": args.patient_name},
                preprocessing=args.preprocessing,
                tracer=args.tracer,
                batch_size=args.batch_size,
                flip_average=args.flip_average,
            )
        except (FileNotFoundError, BadInput, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(json.dumps({"output": args.output, "output_dicom": args.output_dicom, **info}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
