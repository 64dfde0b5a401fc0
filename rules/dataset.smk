# Aggregations per modality: subject-level split, TFRecords, QC tables and previews.


rule split:
    # no file input: the split depends only on the volume ids and the split settings (and the
    # subjects a sample sheet pins: pin_params is empty without, so existing runs do not rerun)
    output:
        f"{RESULTS}/splits/{{modality}}.csv",
    log:
        "logs/split/{modality}.log",
    benchmark:
        "logs/benchmarks/split/{modality}.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        **pin_params(),
        volumes=lambda w: sorted(VOLUMES[w.modality]),
        seed=config["split"]["seed"],
        test_fraction=config["split"]["test_fraction"],
        val_fraction=config["split"]["val_fraction"],
    script:
        "../workflow_scripts/split.py"


rule tfrecords:
    input:
        npz=lambda w: slices_npz(w.modality, split_volumes(w.modality, w.split)),
        split=f"{RESULTS}/splits/{{modality}}.csv",
    output:
        f"{RESULTS}/tfrecords/{{modality}}/{{split}}.tfrecord",
    log:
        "logs/tfrecords/{modality}_{split}.log",
    benchmark:
        "logs/benchmarks/tfrecords/{modality}_{split}.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=30,
    script:
        "../workflow_scripts/tfrecords.py"


rule qc_slice_table:
    input:
        tables=lambda w: [f"{RESULTS}/slices/{w.modality}/{v}.csv" for v in sorted(VOLUMES[w.modality])],
        split=f"{RESULTS}/splits/{{modality}}.csv",
    output:
        report(
            f"{RESULTS}/qc/{{modality}}_slices.csv",
            caption="../report/qc_slices.rst",
            category="Preprocessing QC",
            subcategory="{modality}",
            labels={"modality": "{modality}", "figure": "slice table"},
        ),
    log:
        "logs/qc_slice_table/{modality}.log",
    benchmark:
        "logs/benchmarks/qc_slice_table/{modality}.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../workflow_scripts/qc_slice_table.py"


rule qc_preview:
    input:
        volumes=lambda w: [f"{RESULTS}/volumes/{w.modality}/{v}.nii.gz" for v in preview_volumes(w)],
        masks=lambda w: [f"{RESULTS}/masks/{w.modality}/{v}.nii.gz" for v in preview_volumes(w)],
        npz=lambda w: slices_npz(w.modality, preview_volumes(w)),
    output:
        report(
            f"{RESULTS}/qc/{{modality}}_preview.png",
            caption="../report/qc_preview.rst",
            category="Preprocessing QC",
            subcategory="{modality}",
            labels={"modality": "{modality}", "figure": "mask preview"},
        ),
    log:
        "logs/qc_preview/{modality}.log",
    benchmark:
        "logs/benchmarks/qc_preview/{modality}.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=5,
    params:
        n_slices=config["qc"]["preview_slices"],
    script:
        "../workflow_scripts/qc_preview.py"


rule rejected_table:
    # every volume that was left out, with file, rule, reason and what to do (placeholders of
    # rejected volumes carry their row; good volumes add nothing), and every documented fix
    input:
        npz=lambda w: [npz for m in MODALITIES for npz in slices_npz(m, sorted(VOLUMES[m]))],
        info=lambda w: [f"{RESULTS}/volumes/{m}/{v}.json" for m in MODALITIES for v in sorted(VOLUMES[m])],
    output:
        rejected=f"{RESULTS}/qc/rejected.csv",
        fixes=f"{RESULTS}/qc/fixes.csv",
    log:
        "logs/rejected_table.log",
    benchmark:
        "logs/benchmarks/rejected_table/rejected_table.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../workflow_scripts/rejected_table.py"


onsuccess:
    from medcyclegan.workflow.rejection import summary_line

    _line = summary_line(f"{RESULTS}/qc/rejected.csv")
    if _line:
        print(_line)
