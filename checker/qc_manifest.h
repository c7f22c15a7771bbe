/*
 * SHA-256 manifests: the digest of every file of a snapshot and of every tensor's stored
 * bytes, and one digest over the whole listing, so two artifacts can be compared exactly.
 */
#ifndef QC_MANIFEST_H
#define QC_MANIFEST_H

#include <cjson/cJSON.h>

#include "core/qref_error.h"
#include "core/qref_sha256.h"
#include "io/qref_snapshot.h"

/*
 * Builds {"files": [{"name", "size", "sha256"}], "tensors": [{"name", "dtype", "shape",
 * "file", "sha256"}], "sha256": digest of the lines "file NAME SHA" and "tensor NAME SHA"}.
 * digest, when not NULL, receives the overall digest as hex.
 */
qref_status qc_manifest_build(const qref_snapshot *snapshot, cJSON **out, char digest[QREF_SHA256_HEX_SIZE],
                              qref_error *err);

#endif
