"""Spark's ``fs.s3a.*`` settings from the standard AWS variables, for a lake on ``s3a://``.

The job reads S3 with the same variables every other reader here uses (pyarrow in the lake's
tidy-up and the lakehouse, DuckDB, the AWS CLI): ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
(and ``AWS_SESSION_TOKEN``), ``AWS_ENDPOINT_URL`` for an S3-compatible store such as SeaweedFS or
MinIO, ``AWS_REGION``. :class:`stockpulse.config.S3Settings` reads them once; this module only
maps them to Hadoop's names. Pure: settings in, a dict out.

Spark redacts ``*.secret.key`` and ``*.session.token`` in its UI and event logs (its default
``spark.redaction.regex`` matches "secret" and "token"), and nothing here logs the conf.
"""

from __future__ import annotations

import os
from typing import Mapping

from stockpulse.config import S3Settings


def hadoop_conf(s3: S3Settings) -> dict[str, str]:
    """``spark.hadoop.fs.s3a.*`` for ``s3`` (Spark copies them into Hadoop's configuration).

    An endpoint means an S3-compatible store on a plain host name or IP: its buckets are paths
    (``http://host:port/bucket/key``), not DNS names, hence path-style access; TLS follows the
    endpoint's scheme.
    """
    conf = {"fs.s3a.endpoint.region": s3.region}
    if s3.endpoint_url:
        conf.update({
            "fs.s3a.endpoint": s3.endpoint_url,
            "fs.s3a.path.style.access": "true",
            "fs.s3a.connection.ssl.enabled": str(s3.secure).lower(),
        })
    if s3.access_key:
        conf.update({"fs.s3a.access.key": s3.access_key, "fs.s3a.secret.key": s3.secret_key or ""})
        if s3.session_token:
            conf.update({"fs.s3a.session.token": s3.session_token,
                         "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider"})
    return {f"spark.hadoop.{key}": value for key, value in conf.items()}


def hadoop_conf_from_env(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """:func:`hadoop_conf` of the AWS variables in ``env``."""
    return hadoop_conf(S3Settings.from_env(env))
