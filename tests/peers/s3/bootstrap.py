"""Prepares the test S3 server (moto_server, started by scripts/test with
INITIAL_NO_AUTH_ACTION_COUNT=4): its first four requests are allowed
unsigned and make an IAM user, its access key and an S3 policy. From then
on moto checks every request's SigV4 signature against that key, so the
gateway's signing is exercised, not skipped. Then the test bucket is made
with the new key. Prints "KEY_ID SECRET" for scripts/test.

Usage: bootstrap.py ENDPOINT BUCKET
"""
import sys

import boto3

endpoint, bucket = sys.argv[1], sys.argv[2]
region = "us-east-1"
iam = boto3.client(
    "iam",
    endpoint_url=endpoint,
    region_name=region,
    aws_access_key_id="bootstrap",
    aws_secret_access_key="bootstrap",
)
iam.create_user(UserName="portcullis")
key = iam.create_access_key(UserName="portcullis")["AccessKey"]
policy = iam.create_policy(
    PolicyName="portcullis-s3",
    PolicyDocument='{"Version": "2012-10-17", "Statement": '
    '[{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}',
)
iam.attach_user_policy(UserName="portcullis", PolicyArn=policy["Policy"]["Arn"])
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name=region,
    aws_access_key_id=key["AccessKeyId"],
    aws_secret_access_key=key["SecretAccessKey"],
)
s3.create_bucket(Bucket=bucket)
print(key["AccessKeyId"], key["SecretAccessKey"])
