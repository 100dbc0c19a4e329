# The sanctiongate image: one image, two roles (`worker`, `api`), chosen by the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY src ./src
# gcc and zlib's headers only to build the C record encoder (setup.py), then gone again.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev zlib1g-dev \
    && pip install . \
    && apt-get purge -y --auto-remove gcc libc6-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/sanctiongate sanctiongate \
    && mkdir -p /var/lib/sanctiongate \
    && chown sanctiongate /var/lib/sanctiongate

USER sanctiongate
ENV SANCTIONGATE_RUN_DIR=/var/lib/sanctiongate
WORKDIR /var/lib/sanctiongate
EXPOSE 8080 6066
ENTRYPOINT ["sanctiongate"]
CMD ["api"]
