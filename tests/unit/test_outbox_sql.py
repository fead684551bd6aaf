import pytest

from backend.db.outbox import attach_outbox_sql, detach_outbox_sql


def test_attach_names_the_collection_in_the_trigger():
    ddl = attach_outbox_sql("notes")
    assert "AFTER INSERT OR UPDATE OR DELETE ON notes" in ddl
    assert "litebase_outbox_capture('notes')" in ddl
    assert "litebase_outbox_capture('posts')" in attach_outbox_sql("app_posts", "posts")


@pytest.mark.parametrize("name", ["Notes", "notes; drop table x", "1notes", "", "n" * 64, "a'b"])
def test_only_plain_identifiers_reach_the_ddl(name):
    with pytest.raises(ValueError, match="identifier"):
        attach_outbox_sql(name)
    with pytest.raises(ValueError, match="identifier"):
        detach_outbox_sql(name)
