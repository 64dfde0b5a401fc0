# Built-in demo dataset, written in the real CQ500 / OASIS-3 layouts (one job per subject).
# Used for every modality whose data.<modality>_dir is empty.


rule demo_ct_study:
    output:
        directory(f"{DEMO}/raw/ct/{{study}}"),
    log:
        "logs/demo_ct_study/{study}.log",
    benchmark:
        "logs/benchmarks/demo_ct_study/{study}.tsv"
    wildcard_constraints:
        study=r"CQ500-CT-\d+",
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=15,
    params:
        index=lambda w: int(w.study.rsplit("-", 1)[1]),
        seed=config["demo"]["seed"],
        matrix=config["demo"]["ct_matrix"],
        thin_mm=config["demo"]["ct_thin_slice_mm"],
        thick_mm=config["demo"]["ct_thick_slice_mm"],
    script:
        "../workflow_scripts/demo_data.py"


rule demo_mr_session:
    output:
        session=directory(f"{DEMO}/raw/mr/{{session}}"),
        ground_truth=f"{DEMO}/ground_truth/{{session}}_ct.nii.gz",
    log:
        "logs/demo_mr_session/{session}.log",
    benchmark:
        "logs/benchmarks/demo_mr_session/{session}.tsv"
    wildcard_constraints:
        session=r"OAS3\d+_MR_d\d+",
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=15,
    params:
        index=lambda w: demo_ids("mr").index(w.session),
        seed=config["demo"]["seed"],
    script:
        "../workflow_scripts/demo_data.py"


rule demo_pet_session:
    output:
        session=directory(f"{DEMO}/raw/pet/{{session}}"),
        ground_truth=f"{DEMO}/ground_truth/{{session}}_ct.nii.gz",
    log:
        "logs/demo_pet_session/{session}.log",
    benchmark:
        "logs/benchmarks/demo_pet_session/{session}.tsv"
    wildcard_constraints:
        session=r"OAS3\d+_(?!MR_)[A-Za-z0-9]+_d\d+",
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=15,
    params:
        index=lambda w: demo_ids("pet").index(w.session),
        seed=config["demo"]["seed"],
    script:
        "../workflow_scripts/demo_data.py"
