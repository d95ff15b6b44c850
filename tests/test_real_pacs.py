"""Both real PACSs answer what PS3.4 makes mandatory: C-ECHO, and C-FIND on unique keys.

A smoke test of the fixtures every parametrised flow depends on: each PACS is up, holds
the whole test archive, and knows our AE title.
"""

from __future__ import annotations

import anyio
import pytest

from fixtures.dataset import Archive, all_studies
from qrclient.net import ContextRequest, Settings, open_association
from qrclient.net.uids import VERIFICATION
from qrclient.ops.echo import echo
from qrclient.ops.find import find_values
from qrclient.ops.query import build_query
from qrclient.vocabulary import Level, Model
from tests.conftest import OUR_AE, RealPacs

pytestmark = pytest.mark.anyio


async def test_each_real_pacs_echoes_and_holds_the_archive(
    real_pacs: RealPacs, archive: Archive
) -> None:
    query = build_query(Level.STUDY, Model.STUDY, ["StudyInstanceUID"], default_keys=False)
    contexts = [ContextRequest(VERIFICATION), ContextRequest(query.sop_class)]
    with anyio.fail_after(30):
        async with open_association(real_pacs.peer, contexts, Settings(OUR_AE)) as association:
            assert await echo(association) >= 0
            found = await find_values(association, query)
    assert {m["StudyInstanceUID"] for m in found} == {
        s.study_instance_uid for _, s in all_studies(archive)
    }
