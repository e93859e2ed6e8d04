"""query_api Lambda (API Gateway HTTP API, JWT authorizer): the read-only member API, /api/v1/...

The authorizer has verified the Cognito token; the routes (clearing.api.routes) read its claims from
the request context and decide access with clearing.api.access, the same code the local console runs.
"""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from clearing import bootstrap
from clearing.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context, api=None):
    answer = (api or bootstrap.query_api()).resolve(event, context)
    metrics.add_metric(name=f"ApiResponses{answer['statusCode'] // 100}xx", unit=MetricUnit.Count, value=1)
    return answer
