# MedCycleGAN workflow: raw CQ500 CT and OASIS-3 MR/PET -> subject-split TFRecords
# -> CasNet CycleGAN training (MR->CT, PET->CT) -> example grids, synthetic CT volumes and their
# evaluation against paired real CT.
#
#   snakemake -j8 results/mr2ct/examples.png     # the main command
#   snakemake -j8 preprocess                     # only the TFRecords and QC
#   snakemake -n                                 # what would run, and why
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/discovery.smk"
include: "rules/demo.smk"
include: "rules/preprocess.smk"
include: "rules/dataset.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/dag.smk"


report: "report/workflow.rst"


rule all:
    default_target: True
    input:
        preprocessing_targets(),
        training_targets(),
        report_targets(),
        evaluation_targets(),


rule preprocess:
    input:
        preprocessing_targets(),
