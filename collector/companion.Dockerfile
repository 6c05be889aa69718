# The detwatch companion for the compose stack (compose.yaml builds it from the repository root).
# Built once, from pinned dependencies (companion-requirements.txt, written by scripts/lock-companion):
# nothing is fetched when a container starts.
FROM python:3.11-slim

WORKDIR /srv/detwatch
COPY collector/companion-requirements.txt /tmp/companion-requirements.txt
RUN pip install --no-cache-dir --no-deps -r /tmp/companion-requirements.txt
COPY README.md pyproject.toml ./
COPY src ./src
COPY instrumentation ./instrumentation
RUN pip install --no-cache-dir --no-deps --no-build-isolation ./instrumentation . \
    && pip check

# A named volume mounted here starts with this directory's owner: the unprivileged user's.
RUN mkdir -p /var/lib/detwatch && chown 10001:10001 /var/lib/detwatch
USER 10001:10001
EXPOSE 8000
CMD ["detwatch", "serve", "--host", "0.0.0.0", "--port", "8000"]
