/*
 * SHA-256 manifests: the digest of every file of a snapshot or GGUF model and of every tensor's
 * stored bytes, and one digest over the whole listing, so two artifacts can be compared exactly.
 */
#ifndef QC_MANIFEST_H
#define QC_MANIFEST_H

#include <cjson/cJSON.h>

#include "core/qref_error.h"
#include "core/qref_sha256.h"
#include "io/qref_gguf.h"
#include "io/qref_snapshot.h"
#include "qc_model.h"

/*
 * Builds {"files": [{"name", "size", "sha256"}], "tensors": [{"name", "dtype", "shape",
 * "file", "sha256"}], "sha256": digest of the lines "file NAME SHA" and "tensor NAME SHA"}.
 * digest, when not NULL, receives the overall digest as hex.
 */
qref_status qc_manifest_build(const qref_snapshot *snapshot, cJSON **out, char digest[QREF_SHA256_HEX_SIZE],
                              qref_error *err);

/*
 * Builds the manifest of a GGUF file in the same shape. "files" lists the one file, named by
 * the last component of path. "tensors" lists {"name", "type", "shape", "sha256"} in file
 * order: type is the ggml type name ("Q4_K"), shape lists ne[0] (the row length) first, and
 * sha256 covers the tensor's stored bytes. "sha256" is the digest of the lines "file NAME SHA"
 * and "tensor NAME SHA" in that order.
 */
qref_status qc_manifest_build_gguf(const char *path, const qref_gguf *gguf, cJSON **out,
                                   char digest[QREF_SHA256_HEX_SIZE], qref_error *err);

/* Builds the manifest of an open model: qc_manifest_build or qc_manifest_build_gguf. */
qref_status qc_manifest_build_model(const qc_model *model, cJSON **out, char digest[QREF_SHA256_HEX_SIZE],
                                    qref_error *err);

#endif
