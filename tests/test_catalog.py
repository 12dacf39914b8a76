"""The built-in catalog's metadata.  The catalog itself runs as pytest items collected from
c_fixtures/ by the plugin (c_fixtures/<id>::<variant>[<checker>])."""

from harness.catalog import load_catalog

REQUIRED = {
    "ssl_error_path", "evp_cipher_ctx_error_path", "x509_store_ctx_cleanup_not_free",
    "bio_mem_uaf", "set0_ownership_double_free", "plain_double_free",
}


def test_catalog_is_complete():
    patterns = load_catalog()
    assert len(patterns) >= 18
    assert REQUIRED <= {p.id for p in patterns}
    for p in patterns:
        assert p.references and all(r.startswith("https://") for r in p.references), p.id
        assert p.apis and len(p.description) > 80, p.id
