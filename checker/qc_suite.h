/*
 * Suite files (schema "qconform-suite/1"): which cells to check and how.
 *
 * A suite names a reference model and default datasets (paths relative to the suite file),
 * the evaluation protocol, and a list of cells (each may override the protocol). A cell is one model x method x bits x
 * benchmark with the metric it measures, the subject it measures it on ("reference" for a
 * baseline, "artifact" for the checkpoint under test), and the band its value must fall in.
 * See suites/README.md for the format with an example.
 */
#ifndef QC_SUITE_H
#define QC_SUITE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/qref_error.h"
#include "core/qref_sha256.h"
#include "qc_band.h"

#define QC_SUITE_SCHEMA "qconform-suite/1"
#define QC_PATH_MAX 4096

typedef enum qc_metric {
    QC_METRIC_PPL,                  /* perplexity on a text benchmark */
    QC_METRIC_LOGITS_MAX_ABS_ERROR, /* largest |logit - golden logit| over a golden token sequence */
    QC_METRIC_KLD,                  /* mean KL(reference || artifact) per scored token, llama.cpp's chunks */
    QC_METRIC_PPL_RATIO             /* PPL(artifact) / PPL(reference) on the same tokens, llama.cpp's chunks */
} qc_metric;

typedef struct qc_suite_cell {
    char id[128];
    char method[32];       /* "fp", "rtn", "gptq", ... */
    int bits;              /* 16 or 32 for a full-precision baseline */
    int group_size;        /* -1 = per-channel */
    bool sym;
    bool subject_reference; /* true: measured on the reference model */
    char benchmark[32];    /* "wikitext2", "golden-logits" */
    qc_metric metric;
    char golden[QC_PATH_MAX]; /* QC_METRIC_LOGITS_MAX_ABS_ERROR: golden JSON, resolved path */
    qc_band band;
    char artifact[QC_PATH_MAX]; /* optional bundled artifact, resolved path ("" = none) */
    size_t windows;        /* perplexity windows (llama.cpp: chunks) to evaluate; 0 = the suite's default */
    char protocol[16];     /* perplexity protocol of this cell; "" = the suite's */
    int seqlen;            /* window length (llama.cpp: context) of this cell; 0 = the suite's */
    char quant_type[32];   /* GGUF artifacts: the file type the cell checks, e.g. "Q4_K_M"; "" = any */
} qc_suite_cell;

typedef struct qc_suite {
    char path[QC_PATH_MAX];
    char sha256[QREF_SHA256_HEX_SIZE];
    char name[128];
    char model[64];
    char reference[QC_PATH_MAX];  /* resolved path of the reference snapshot ("" = none) */
    char wikitext2[QC_PATH_MAX];  /* resolved default WikiText-2 path ("" = none) */
    char protocol[16];            /* perplexity protocol: "study" or "llamacpp" */
    int seqlen;                   /* 0 = the protocol's default */
    size_t windows;               /* perplexity windows per cell; 0 = every window */
    qc_suite_cell *cells;
    size_t cell_count;
} qc_suite;

/* Reads and validates a suite file; relative paths in it are resolved against its folder. */
qref_status qc_suite_load(const char *path, qc_suite *suite, qref_error *err);
void qc_suite_free(qc_suite *suite);

/* The cell with this id, or NULL. */
const qc_suite_cell *qc_suite_find_cell(const qc_suite *suite, const char *id);

const char *qc_metric_name(qc_metric metric);

#endif
