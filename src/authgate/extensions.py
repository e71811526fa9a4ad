"""The Flask extension singletons, bound to an app in :func:`authgate.app.create_app`."""

from __future__ import annotations

from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so Alembic migrations name constraints."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


# A session lives for one request (one app context). Its objects keep their values after a
# commit instead of being reloaded on next access: a password login commits its audit event
# and then serves the user it loaded (on PostgreSQL the reload cost four more round trips:
# ping, BEGIN, SELECT, ROLLBACK). So a Core UPDATE of a loaded row expires that object
# itself (sessions._spend, issuance.start_code_grant), and code that must see another
# transaction's later write refreshes the object, as sessions.rotate's concurrent path does.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})

#: CSRF tokens for the HTML forms; checked by the ``web`` blueprint, not on the JSON API.
csrf = CSRFProtect()
