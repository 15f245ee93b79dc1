"""Create an IAM user with an s3:* policy and an access key on a fresh moto server.

moto checks S3 signatures only once IAM holds users; INITIAL_NO_AUTH_ACTION_COUNT=3 lets these three
calls through unsigned. Prints "ACCESS_KEY SECRET_KEY".
"""
import json
import sys

import boto3  # installed with moto[server]

endpoint = sys.argv[1]
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="dicom-etl-test")
iam.put_user_policy(UserName="dicom-etl-test", PolicyName="s3-all", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}))
key = iam.create_access_key(UserName="dicom-etl-test")["AccessKey"]
print(key["AccessKeyId"], key["SecretAccessKey"])
