# syntax=docker/dockerfile:1
# One image for the HTTP service (the default command) and for workers:
#   docker run IMAGE                          -> uvicorn mailq.service.app:app on :8000
#   docker run IMAGE python -m mailq.worker   -> one worker
#   docker run IMAGE mailq migrate            -> bring the schema up to date
# It needs MAILQ_DATABASE_URL: the embedded PostgreSQL (pgserver) is left out of the image.
# What runs is the wheel, as users install it: no checkout in the image.

# -- build: the wheel, from the files that go into it ---------------------------------------
FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mailq ./mailq
COPY migrations ./migrations
RUN pip wheel --no-deps --wheel-dir /wheels .

# -- runtime: the wheel installed into a virtualenv, run as an unprivileged user ------------
FROM python:3.12-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /tmp/wheels
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install /tmp/wheels/mailq-*.whl \
 && /opt/venv/bin/pip uninstall -y pgserver \
 && rm -rf /tmp/wheels
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/mailq --create-home mailq \
 && mkdir -p /var/lib/mailq/outbox && chown -R mailq:mailq /var/lib/mailq
WORKDIR /var/lib/mailq
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MAILQ_HOME=/var/lib/mailq
USER mailq
EXPOSE 8000
CMD ["uvicorn", "mailq.service.app:app", "--host", "0.0.0.0", "--port", "8000"]
