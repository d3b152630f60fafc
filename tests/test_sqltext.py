from hypothesis import given, settings
from hypothesis import strategies as st

from aerelion.sqltext import mask, split_statements


def test_splits_on_semicolons_and_trims():
    assert split_statements("select 1;\n\n  select 2 ;;\n") == ["select 1", "select 2"]


def test_keeps_comments_with_the_statement_they_precede():
    text = "-- first\ncreate table a (id int);\n-- trailing\n"
    assert split_statements(text) == ["-- first\ncreate table a (id int)", "-- trailing"]


def test_semicolons_inside_quotes_comments_and_dollar_bodies_do_not_split():
    text = (
        "select 'a;b', \"c;d\";\n"
        "/* x; /* nested; */ y; */ select 2;\n"
        "create function f() returns int language plpgsql as $body$ begin; return 1; end $body$;\n"
        "do $$ begin perform 1; end $$;\n"
        "select 'it''s; fine';\n"
        "-- a comment; with a semicolon\nselect 3"
    )
    assert split_statements(text) == [
        "select 'a;b', \"c;d\"",
        "/* x; /* nested; */ y; */ select 2",
        "create function f() returns int language plpgsql as $body$ begin; return 1; end $body$",
        "do $$ begin perform 1; end $$",
        "select 'it''s; fine'",
        "-- a comment; with a semicolon\nselect 3",
    ]


def test_begin_atomic_bodies_and_parentheses_stay_whole():
    text = (
        "create function g() returns int language sql begin atomic select 1; select 2; end;\n"
        "create rule r as on insert to t do also (insert into u select 1; select 2);\n"
    )
    assert split_statements(text) == [
        "create function g() returns int language sql begin atomic select 1; select 2; end",
        "create rule r as on insert to t do also (insert into u select 1; select 2)",
    ]


def test_positional_parameters_are_not_dollar_quotes():
    assert split_statements("prepare p as select $1; select 2;") == [
        "prepare p as select $1",
        "select 2",
    ]


def test_mask_blanks_comments_and_literals_but_reads_dollar_bodies_as_code():
    text = "select 'create role x' -- create role y\n, $$ begin create role z; end $$"
    masked = mask(text)
    assert "create role x" not in masked
    assert "create role y" not in masked
    assert "create role z" in masked


def test_mask_can_keep_quoted_identifiers():
    assert '"uuid-ossp"' in mask('create extension "uuid-ossp"', keep_identifiers=True)
    assert '"uuid-ossp"' not in mask('create extension "uuid-ossp"')


_plain_statement = st.from_regex(r"select [a-z0-9_ ,]{1,20}", fullmatch=True)
_literal = st.from_regex(r"'[a-z;$ ]{0,10}'", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_plain_statement, _literal), min_size=1, max_size=8))
def test_split_recovers_every_statement(parts):
    statements = [f"{head.strip()} || {literal}" for head, literal in parts]
    assert split_statements(";\n".join(statements) + ";") == statements
