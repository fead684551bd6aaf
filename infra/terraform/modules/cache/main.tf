# ElastiCache Redis: encrypted in transit (TLS) and at rest, an auth token from Secrets
# Manager, failover across zones in prod, and `noeviction`: Celery's queues live here and
# must never be evicted to make room.

resource "random_password" "auth" {
  length  = 64
  special = false # ElastiCache tokens allow only some symbols; 64 alphanumerics suffice
}

resource "aws_secretsmanager_secret" "auth" {
  #checkov:skip=CKV2_AWS_57:ElastiCache auth tokens rotate with a planned replace, not a Lambda.
  name_prefix = "${var.name}-redis-auth-"
  description = "Redis auth token for ${var.name}"
  kms_key_id  = var.kms_key_arn
  tags        = var.tags
}

resource "aws_secretsmanager_secret_version" "auth" {
  secret_id     = aws_secretsmanager_secret.auth.id
  secret_string = random_password.auth.result
}

resource "aws_elasticache_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
  tags       = var.tags
}

resource "aws_elasticache_parameter_group" "this" {
  name   = "${var.name}-redis7"
  family = "redis7"
  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }
  tags = var.tags
}

resource "aws_elasticache_replication_group" "this" {
  #checkov:skip=CKV2_AWS_50:automatic_failover is a variable: on in prod, off in dev (one node).
  replication_group_id       = var.name
  description                = "Litebase: Celery broker and results, realtime fan-out, caches"
  engine                     = "redis"
  engine_version             = var.engine_version
  node_type                  = var.node_type
  port                       = 6379
  num_cache_clusters         = 1 + var.replicas
  automatic_failover_enabled = var.automatic_failover
  multi_az_enabled           = var.automatic_failover
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [var.security_group_id]
  parameter_group_name       = aws_elasticache_parameter_group.this.name
  at_rest_encryption_enabled = true
  kms_key_id                 = var.kms_key_arn
  transit_encryption_enabled = true
  auth_token                 = random_password.auth.result
  snapshot_retention_limit   = var.snapshot_retention_days
  auto_minor_version_upgrade = true
  apply_immediately          = false
  tags                       = var.tags
}
