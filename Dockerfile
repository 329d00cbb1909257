# syntax=docker/dockerfile:1
# One image for the HTTP service (the default command) and for workers:
#   docker run IMAGE                          -> uvicorn service.app:app on :8000
#   docker run IMAGE python -m mailq.worker   -> one worker
#   docker run IMAGE mailq migrate            -> bring the schema up to date
# It needs MAILQ_DATABASE_URL: the embedded PostgreSQL (pgserver) is left out of the image.

# -- build: a virtualenv with mailq and its dependencies -----------------------------------
FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY mailq ./mailq
COPY service ./service
COPY migrations ./migrations
# Editable, so that `mailq migrate` finds alembic.ini and migrations/ next to the package.
RUN /opt/venv/bin/pip install -e . \
 && /opt/venv/bin/pip uninstall -y pgserver \
 && find /opt/venv /app -name '__pycache__' -prune -exec rm -rf {} +

# -- runtime: the virtualenv and the sources, run as an unprivileged user -------------------
FROM python:3.12-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/mailq --create-home mailq \
 && mkdir -p /var/lib/mailq/outbox && chown -R mailq:mailq /var/lib/mailq
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MAILQ_HOME=/var/lib/mailq
USER mailq
EXPOSE 8000
CMD ["uvicorn", "service.app:app", "--host", "0.0.0.0", "--port", "8000"]
