"""Pure domain: plain data in, decisions and events out. No boto3, Kafka, Powertools or os.environ."""
