"""Congruence: the same test body runs against Qdrant Edge and qdrant-client (local mode)."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import QdrantClient

from mrse.index import SearchFilter
from mrse.index.base import EdgeOptions, Fetch, stock_payload
from mrse.index.client import ClientIndex
from mrse.index.edge import EdgeIndex

DIM = 16


def _catalog(n=300, seed=0):
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = [f"item-{i:04d}" for i in range(n)]
    payloads = [
        {"category": ["tops", "shoes", "bags"][i % 3], "brand": f"b{i % 5}", "price": float(i)}
        for i in range(n)
    ]
    return ids, vecs, payloads


def _exact(ids, vecs, payloads, q, k, f=None):
    keep = [i for i in range(len(ids)) if f is None or f.matches(payloads[i])]
    order = sorted(keep, key=lambda i: -float(vecs[i] @ q))[:k]
    return [ids[i] for i in order]


def test_search_matches_exact_cosine_top_k(index):
    ids, vecs, payloads = _catalog()
    index.upsert(ids, vecs, payloads)
    assert index.count() == len(ids)
    q = vecs[7] + 0.1 * vecs[8]
    q /= np.linalg.norm(q)
    hits = index.search(q, 10, exact=True)
    assert [h.item_id for h in hits] == _exact(ids, vecs, payloads, q, 10)
    assert hits[0].item_id == "item-0007" and hits[0].score == pytest.approx(
        float(vecs[7] @ q), abs=1e-4
    )
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize(
    "flt",
    [
        SearchFilter(categories=("shoes",)),
        SearchFilter(brands=("b1", "b2")),
        SearchFilter(price_min=50.0, price_max=120.0),
        SearchFilter(categories=("tops", "bags"), brands=("b0",), price_max=200.0),
    ],
)
def test_filters_restrict_results_exactly(index, flt):
    ids, vecs, payloads = _catalog()
    index.upsert(ids, vecs, payloads)
    q = vecs[3]
    hits = index.search(q, 20, flt, exact=True)
    assert hits and all(flt.matches(h.payload) for h in hits)
    assert [h.item_id for h in hits] == _exact(ids, vecs, payloads, q, 20, flt)


def test_incremental_upsert_and_delete(index):
    ids, vecs, payloads = _catalog(50)
    index.upsert(ids, vecs, payloads)
    index.upsert(["item-0001"], vecs[[2]], [{"category": "shoes", "brand": "b9", "price": 1.0}])
    hit = index.search(vecs[2], 2, exact=True)
    assert {h.item_id for h in hit} == {"item-0001", "item-0002"}
    assert index.count() == 50
    index.delete(["item-0002", "item-0001"])
    assert index.count() == 48
    assert "item-0002" not in {h.item_id for h in index.search(vecs[2], 5, exact=True)}
    with pytest.raises(ValueError):
        index.upsert(["x"], np.zeros((1, DIM + 1), np.float32), [{}])


def test_edge_index_persists_across_reopen(tmp_path):
    ids, vecs, payloads = _catalog(40)
    idx = EdgeIndex(tmp_path / "e", DIM)
    idx.upsert(ids, vecs, payloads)
    idx.close()
    again = EdgeIndex(tmp_path / "e", DIM)
    assert again.count() == 40 and again.search(vecs[5], 1)[0].item_id == "item-0005"
    again.close()


def test_a_category_brand_or_price_filter_searches_with_more_candidates(tmp_path):
    """``hnsw_ef_filtered`` for a request that filters on category, brand or price (the walk
    passes over the items the filter leaves out); ``hnsw_ef`` otherwise, the default stock
    filter included; never fewer than the limit. Both backends send it."""
    o = EdgeOptions(hnsw_ef=200, hnsw_ef_filtered=400)
    for f in (SearchFilter(categories=("shoes",)), SearchFilter(brands=("b1",)),
              SearchFilter(price_max=10.0), SearchFilter(price_min=1.0)):  # fmt: skip
        assert f.selective and o.ef_for(f, 100) == 400
    for f in (None, SearchFilter(), SearchFilter(in_stock=(True, False))):
        assert o.ef_for(f, 100) == 200
    assert o.ef_for(SearchFilter(categories=("shoes",)), 1000) == 1000
    with pytest.raises(ValueError, match="hnsw_ef_filtered"):
        EdgeOptions(hnsw_ef_filtered=0)
    q = np.ones(DIM, np.float32)
    brand, plain = Fetch(10, q, filter=SearchFilter(brands=("b1",))), Fetch(10, q)
    edge = EdgeIndex(tmp_path / "ef", DIM, o)
    assert edge._request(brand).params.hnsw_ef == 400
    assert edge._request(plain).params.hnsw_ef == 200
    edge.close()
    client = ClientIndex(QdrantClient(":memory:"), "ef", DIM, o)
    assert client._request(brand).params.hnsw_ef == 400
    assert client._request(plain).params.hnsw_ef == 200


def test_filter_validation():
    with pytest.raises(ValueError):
        SearchFilter(price_min=10, price_max=5)
    with pytest.raises(ValueError):
        SearchFilter(price_min=-1)
    with pytest.raises(ValueError):
        SearchFilter(in_stock=())
    assert SearchFilter(in_stock=(True, False)).empty
    assert not SearchFilter().empty  # by default: in stock only


def test_stock_filter_patches_and_vector_reads(index):
    """Sold-out items are left out unless asked for; a payload patch changes what filters see
    and nothing else; stored vectors read back by item id (missing ids left out)."""
    ids, vecs, payloads = _catalog(60)
    payloads = [{**p, **stock_payload(i % 4 != 0)} for i, p in enumerate(payloads)]
    payloads[1].pop("stock")  # no stock field: in stock
    index.upsert(ids, vecs, payloads)
    q = vecs[0]
    for stock in [(True,), (False,), (True, False)]:
        f = SearchFilter(in_stock=stock)
        assert [h.item_id for h in index.search(q, 60, f, exact=True)] == _exact(
            ids, vecs, payloads, q, 60, f
        )
    assert "item-0000" not in {h.item_id for h in index.search(q, 60, exact=True)}
    patch = {"stock": "in", "price": 1.5}
    index.patch_payloads({"item-0000": patch, "item-0002": patch, "never-indexed": patch})
    hits = {h.item_id: h for h in index.search(q, 60, exact=True)}
    assert hits["item-0000"].payload["price"] == 1.5 and hits["item-0002"].payload["price"] == 1.5
    assert hits["item-0000"].payload["category"] == "tops"  # other keys kept
    assert hits["item-0000"].score == pytest.approx(1.0, abs=1e-4)  # vector kept
    assert index.count() == 60  # the unknown id was not created
    got = index.vectors(["item-0003", "nope", "item-0005"])
    assert set(got) == {"item-0003", "item-0005"}
    np.testing.assert_allclose(got["item-0005"], vecs[5], atol=1e-6)
    index.delete(["item-0003"])
    assert set(index.vectors(["item-0003"])) == set()


def test_batched_search_equals_one_search_per_query(index):
    ids, vecs, payloads = _catalog()
    index.upsert(ids, vecs, payloads)
    queries = vecs[[1, 2, 3]]
    limits = [5, 12, 3]
    filters = [None, SearchFilter(categories=("shoes",)), SearchFilter(price_max=100.0)]
    batched = index.search_many(queries, limits, filters, exact=True)
    triples = zip(queries, limits, filters, strict=True)
    single = [index.search(q, k, f, exact=True) for q, k, f in triples]
    assert [[h.item_id for h in r] for r in batched] == [[h.item_id for h in r] for r in single]
    assert index.search_many(np.zeros((0, DIM), np.float32), [], []) == []


@pytest.mark.parametrize("backend", ["edge", "client"])
def test_equal_scores_come_back_in_item_id_order_whatever_the_insertion_order(tmp_path, backend):
    """Variants of one product can have the same vector (a text-only model, one text): equal
    scores. The same search must give the same list, in every process and whatever order the
    catalog was written in: ties in item id order, at the cut too (here the ties run past the
    first window fetched, so it is widened)."""
    rng = np.random.default_rng(1)
    twin = rng.normal(size=DIM).astype(np.float32)
    twin /= np.linalg.norm(twin)
    others = rng.normal(size=(40, DIM)).astype(np.float32)
    others /= np.linalg.norm(others, axis=1, keepdims=True)
    # 30 equal: more than the first window fetched (5 + TIE_MARGIN), so it is widened twice
    ids = [f"twin-{i:02d}" for i in range(30)] + [f"other-{i:02d}" for i in range(40)]
    vecs = np.vstack([np.tile(twin, (30, 1)), others])
    results = []
    for run, order in enumerate([rng.permutation(len(ids)) for _ in range(4)]):
        idx = (
            EdgeIndex(tmp_path / f"e{run}", DIM)
            if backend == "edge"
            else ClientIndex(QdrantClient(":memory:"), f"items_{run}", DIM)
        )
        idx.upsert([ids[i] for i in order], vecs[order], [{}] * len(ids))
        for exact in (True, False):
            results.append([h.item_id for h in idx.search(twin, 5, exact=exact)])
            (batched,) = idx.search_many(twin[None], [5], [None], exact=exact)
            results.append([h.item_id for h in batched])
        assert idx.search(twin, 0) == [] and idx.search_many(twin[None], [0], [None]) == [[]]
        idx.close()
    assert results == [[f"twin-{i:02d}" for i in range(5)]] * len(results)


def test_edge_builds_hnsw_above_the_threshold_and_keeps_recall(tmp_path):
    rng = np.random.default_rng(0)
    n, dim = 12_000, 32  # 1.5 MB of vectors: above the 1 MB indexing threshold
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = [f"i{i}" for i in range(n)]
    idx = EdgeIndex(tmp_path / "h", dim)
    idx.upsert(ids, vecs, [{"category": "c", "brand": "b"}] * n)
    idx.optimize()
    assert idx.indexed_vectors() == n
    queries = vecs[:50] + 0.3 * rng.normal(size=(50, dim)).astype(np.float32)
    recall = []
    for q in queries:
        exact = {h.item_id for h in idx.search(q, 10, exact=True)}
        approx = {h.item_id for h in idx.search(q, 10)}
        recall.append(len(exact & approx) / 10)
    assert np.mean(recall) >= 0.95
    idx.close()


def test_qdrant_server_backend_sends_the_api_key_from_a_secret(tmp_path, monkeypatch):
    """A Qdrant server cannot run here: a stand-in HTTP endpoint records what the client sends
    and refuses requests without the key, as Qdrant does."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from mrse.index.build import IndexConfig, open_index

    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen.append(self.headers.get("api-key"))
            ok = self.headers.get("api-key") == "k3y-from-a-secret"
            body = {"result": {"exists": True}, "status": "ok", "time": 0}
            self.send_response(200 if ok else 401)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body if ok else {"status": {"error": "no key"}}).encode())

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        key_file = tmp_path / "qdrant_api_key"
        key_file.write_text("k3y-from-a-secret\n")
        url = f"http://127.0.0.1:{server.server_port}"
        monkeypatch.setenv("MRSE_QDRANT_API_KEY_FILE", str(key_file))
        index = open_index(IndexConfig(backend="qdrant", url=url), "v1", DIM)
        assert seen == ["k3y-from-a-secret"]  # collection_exists, with the key
        index.close()
        monkeypatch.delenv("MRSE_QDRANT_API_KEY_FILE")
        with pytest.raises(Exception, match="401|Unauthorized|no key"):
            open_index(IndexConfig(backend="qdrant", url=url), "v1", DIM)
        assert seen[-1] is None
    finally:
        server.shutdown()


def test_among_returns_the_named_items_that_pass_the_filter_in_their_order(index):
    ids, vecs, payloads = _catalog(30)
    index.upsert(ids, vecs, payloads)
    wanted = [ids[5], "not-there", ids[2], ids[9]]
    got = index.among(wanted)
    assert [h.item_id for h in got] == [ids[5], ids[2], ids[9]]
    assert all(h.payload["category"] == payloads[ids.index(h.item_id)]["category"] for h in got)
    cat = payloads[5]["category"]
    only = index.among(wanted, SearchFilter(categories=(cat,)))
    assert [h.item_id for h in only] == [i for i in (ids[5], ids[2], ids[9])
                                         if payloads[ids.index(i)]["category"] == cat]  # fmt: skip
    assert index.among([]) == []


def test_payloads_reads_the_named_items_without_a_filter(index):
    ids, vecs, payloads = _catalog(30)
    payloads[4] = {**payloads[4], **stock_payload(False)}
    index.upsert(ids, vecs, payloads)
    got = index.payloads([ids[5], "not-there", ids[4]])
    assert set(got) == {ids[5], ids[4]}  # sold out too: a read by id filters nothing
    assert got[ids[4]] == {**payloads[4], "item_id": ids[4]}
    assert index.payloads([]) == {}


def test_a_search_may_read_the_item_ids_alone_or_a_few_payload_keys(index):
    ids, vecs, payloads = _catalog(30)
    index.upsert(ids, vecs, payloads)
    q = vecs[0]
    full = index.search_many(q[None], [5], [None])[0]
    bare = index.search_many(q[None], [5], [None], payload=False)[0]
    some = index.search_many(q[None], [5], [None], payload=("category",))[0]
    assert [h.item_id for h in bare] == [h.item_id for h in full] == [h.item_id for h in some]
    assert all(set(h.payload) == {"item_id"} for h in bare)
    assert all(set(h.payload) == {"item_id", "category"} for h in some)
    assert all(len(h.payload) > 2 for h in full)


def test_edge_names_payload_free_hits_from_kept_names_and_drops_deleted_points(
    tmp_path, monkeypatch
):
    """A search for ids only reads no payload: the hits are named from names kept once read
    (a point's id is a fixed function of its item id). Past ``NAMES_MAX`` the kept names are
    dropped and read again; a point deleted since is simply not among the hits."""
    import mrse.index.edge as edge

    monkeypatch.setattr(edge, "NAMES_MAX", 20)
    ids, vecs, payloads = _catalog(60)
    index = EdgeIndex(tmp_path / "edge", DIM)
    index.upsert(ids, vecs, payloads)
    full = [[h.item_id for h in hs] for hs in index.search_many(vecs[:6], [10] * 6, [None] * 6)]
    reads: list = []
    monkeypatch.setattr(index, "_shard", _Spy(index._shard, reads))

    def bare(rows: slice) -> list[list[str]]:
        n = len(range(60)[rows])
        hits = index.search_many(vecs[rows], [10] * n, [None] * n, payload=False)
        return [[h.item_id for h in hs] for hs in hits]

    assert bare(slice(0, 3)) == full[:3] and len(reads) == 1
    assert bare(slice(0, 3)) == full[:3] and len(reads) == 1  # named from the kept names
    assert bare(slice(3, 6)) == full[3:6] and len(reads) == 2  # new names: the old dropped
    assert len(index._names) <= 20 + 30  # the bound, plus one call's names
    assert bare(slice(0, 3)) == full[:3] and len(reads) == 3  # read again
    index.delete([full[0][0]])
    assert full[0][0] not in bare(slice(0, 1))[0]
    index.close()
    monkeypatch.setattr(edge, "NAMES_MAX", 1000)
    reopened = EdgeIndex(tmp_path / "edge", DIM)  # warmed: every name read before traffic
    reopened.warm()
    assert len(reopened._names) == 59
    monkeypatch.setattr(reopened, "_shard", _Spy(reopened._shard, reads := []))
    hits = reopened.search_many(vecs[1:3], [10, 10], [None, None], payload=False)
    assert [[h.item_id for h in hs] for hs in hits] == full[1:3] and reads == []
    reopened.close()


class _Spy:
    """An Edge shard that records its ``retrieve`` calls."""

    def __init__(self, shard, calls: list) -> None:
        self._shard, self._calls = shard, calls

    def retrieve(self, *args, **kwargs):
        self._calls.append(args)
        return self._shard.retrieve(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._shard, name)


def _sketch_blobs(n, seed=1, without=()):
    """Unit photo sketches (n, SKETCH_DIM) and their ``_p`` blobs (None where ``without``)."""
    import base64

    from mrse.features.photo import SKETCH_DIM

    rng = np.random.default_rng(seed)
    sk = rng.normal(size=(n, SKETCH_DIM)).astype(np.float32)
    sk /= np.linalg.norm(sk, axis=1, keepdims=True)
    sk = sk.astype("<f2").astype(np.float32)  # as stored
    blobs = [None if i in without else base64.b64encode(s.astype("<f2").tobytes()).decode()
             for i, s in enumerate(sk)]  # fmt: skip
    return sk, blobs


def test_the_photo_channel_searches_the_sketches_items_with_a_photo_carry(index):
    """The payload's photo sketch is searched as the index's own vector: nearest sketches
    first (score: their cosine), items without a photo never, the filter applied; a patch
    keeps it. Shop by photo's candidates: the towers' best with their sketches, then the
    channel's nearest the towers lack, scored exactly by the towers' vector."""
    from mrse.index.base import PHOTO_KEY, sketch_of

    ids, vecs, payloads = _catalog(120)
    sk, blobs = _sketch_blobs(120, without={5, 6})
    payloads = [{**p, PHOTO_KEY: b} if b else p for p, b in zip(payloads, blobs, strict=True)]
    index.upsert(ids, vecs, payloads)
    assert index.has_photo
    q = sk[[7, 5]]
    near, other = index.search_photos(q, [5, 300], [None, None])
    assert near[0].item_id == "item-0007" and near[0].score == pytest.approx(1.0, abs=1e-3)
    want = sorted((i for i in range(120) if i not in (5, 6)), key=lambda i: -float(sk[i] @ sk[7]))
    assert [h.item_id for h in near] == [ids[i] for i in want[:5]]
    assert {"item-0005", "item-0006"}.isdisjoint(h.item_id for h in other)
    assert len(other) == 118  # every item with a photo, none without
    shoes = SearchFilter(categories=("shoes",))
    (kept,) = index.search_photos(q[:1], [300], [shoes])
    assert kept and all(payloads[int(h.item_id[-4:])]["category"] == "shoes" for h in kept)
    index.patch_payloads({"item-0007": stock_payload(True)})
    assert index.search_photos(q[:1], [1], [None])[0][0].item_id == "item-0007"
    # the towers' vector points at item 0; the photo is item 7's, far down the towers' list
    towers = np.argsort([-float(vecs[0] @ v) for v in vecs], kind="stable")
    assert list(towers).index(7) > 5
    (cands,) = index.photo_candidates(vecs[:1], sk[[7]], [5], 3, [None])
    nothing = SearchFilter(categories=("no such category",))  # a filter that keeps no item
    assert index.photo_candidates(vecs[:1], sk[[7]], [5], 3, [nothing]) == [[]]
    by = {h.item_id: h for h in cands}
    assert [h.item_id for h in cands[:5]] == [ids[i] for i in towers[:5]]
    assert by["item-0007"].found_by == "photo"
    near3 = [h.item_id for h in index.search_photos(sk[[7]], [3], [None])[0]]
    assert {h.item_id for h in cands} == {ids[i] for i in towers[:5]} | set(near3)
    for h in cands:
        i = int(h.item_id[-4:])
        assert h.score == pytest.approx(float(vecs[0] @ vecs[i]), abs=1e-4)
        assert h.found_by == ("dense" if h.item_id not in near3 else
                              "both" if i in towers[:5] else "photo")  # fmt: skip
        assert (sketch_of(h.payload) is None) == (i in (5, 6))
        if i not in (5, 6):
            assert np.allclose(sketch_of(h.payload), sk[i], atol=1e-3)


def test_an_edge_shard_written_before_the_photo_channel_opens_without_it(tmp_path):
    """A shard made with the towers' vector and the lexical channel only (before the photo
    channel) opens, serves, and answers the photo channel with nothing."""
    import qdrant_edge as qe

    from mrse.index.base import PHOTO_KEY, sketch_of
    from mrse.index.edge import _edge_config

    path = tmp_path / "old"
    qe.EdgeShard.create(str(path), _edge_config(EdgeOptions(), DIM, photo=False)).close()
    index = EdgeIndex(path, DIM)
    assert index.has_lexical and not index.has_photo
    ids, vecs, payloads = _catalog(30)
    sk, blobs = _sketch_blobs(30)
    index.upsert(ids, vecs, [{**p, PHOTO_KEY: b} for p, b in zip(payloads, blobs, strict=True)])
    assert index.search(vecs[3], 1)[0].item_id == "item-0003"
    assert index.search_photos(sk[:1], [5], [None]) == [[]]
    # shop by photo: the towers' candidates alone, their sketches read from the payload
    (cands,) = index.photo_candidates(vecs[3:4], sk[3:4], [4], 3, [None])
    assert cands[0].item_id == "item-0003" and len(cands) == 4
    assert all(h.found_by == "dense" for h in cands)
    assert np.allclose(sketch_of(cands[0].payload), sk[3], atol=1e-3)
    index.close()
