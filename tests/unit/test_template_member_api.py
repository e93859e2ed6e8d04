"""The member API and the console in template.yaml: JWT on every route, throttled, logged, read-only."""

from __future__ import annotations

from pathlib import Path

import pytest
from clearing_tools import template_model as tm

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def resources() -> dict:
    return tm.load_template(ROOT / "template.yaml")["Resources"]


def test_the_http_api_verifies_cognito_id_tokens_on_every_route(resources):
    api = resources["MemberApi"]["Properties"]
    assert resources["MemberApi"]["Type"] == "AWS::Serverless::HttpApi"
    auth = api["Auth"]
    assert auth["DefaultAuthorizer"] == "CognitoJwt"
    jwt = auth["Authorizers"]["CognitoJwt"]["JwtConfiguration"]
    assert "cognito-idp" in str(jwt["issuer"]) and "MemberUserPool" in str(jwt["issuer"])
    assert jwt["audience"] == [{"Ref": "ConsoleUserPoolClient"}]
    assert api["DefaultRouteSettings"]["ThrottlingRateLimit"] == {"Ref": "ApiThrottleRateLimit"}
    assert api["DefaultRouteSettings"]["ThrottlingBurstLimit"] == {"Ref": "ApiThrottleBurstLimit"}
    logs = resources["MemberApiAccessLogGroup"]["Properties"]
    assert api["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": ["MemberApiAccessLogGroup", "Arn"]}
    assert logs["KmsKeyId"] and logs["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_members_cannot_write_their_member_id_and_operators_are_a_group(resources):
    client = resources["ConsoleUserPoolClient"]["Properties"]
    assert "custom:member_id" in client["ReadAttributes"]
    assert "custom:member_id" not in client["WriteAttributes"]
    assert client["GenerateSecret"] is False
    pool = resources["MemberUserPool"]["Properties"]
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert resources["OperatorsGroup"]["Properties"]["GroupName"] == "operators"


def test_the_query_function_reads_by_key_only(resources):
    fn = resources["QueryApiFunction"]["Properties"]
    assert fn["CodeUri"] == "functions/query_api/" and fn["Handler"] == "app.lambda_handler"
    assert (
        fn["Events"]["ApiV1"]["Type"] == "HttpApi" and fn["Events"]["ApiV1"]["Properties"]["Method"] == "GET"
    )
    assert fn["ReservedConcurrentExecutions"] == {"Ref": "ApiReservedConcurrency"}
    statements = [s for p in fn["Policies"] for s in p["Statement"]]
    actions = {
        a for s in statements for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    assert actions == {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "kms:Decrypt"}
    tables = str([s["Resource"] for s in statements if "dynamodb:Query" in s["Action"]])
    assert "StateTable" not in tables  # the API never reads checkpoints, books or exposure


def test_the_console_bucket_is_private_behind_cloudfront_with_the_api_on_the_same_origin(resources):
    bucket = resources["ConsoleBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert (
        bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
            "SSEAlgorithm"
        ]
        == "aws:kms"
    )
    policy = resources["ConsoleBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    reader = next(s for s in policy if s["Effect"] == "Allow")
    assert (
        reader["Principal"] == {"Service": "cloudfront.amazonaws.com"} and reader["Action"] == "s3:GetObject"
    )
    assert "AWS:SourceArn" in reader["Condition"]["StringEquals"]
    dist = resources["ConsoleDistribution"]["Properties"]["DistributionConfig"]
    s3_origin = next(o for o in dist["Origins"] if o["Id"] == "console-files")
    assert s3_origin["OriginAccessControlId"] and s3_origin["S3OriginConfig"]["OriginAccessIdentity"] == ""
    assert dist["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    assert dist["Logging"]["Bucket"] == {"Fn::GetAtt": ["ConsoleLogBucket", "RegionalDomainName"]}
    (api,) = dist["CacheBehaviors"]
    assert api["PathPattern"] == "/api/*" and api["TargetOriginId"] == "member-api"
    cache = resources["ApiCachePolicy"]["Properties"]["CachePolicyConfig"]
    assert cache["DefaultTTL"] == 0 and cache["ParametersInCacheKeyAndForwardedToOrigin"]["HeadersConfig"][
        "Headers"
    ] == ["Authorization"]
