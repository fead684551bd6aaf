# ECS Fargate: services api (behind the ALB, autoscaled on CPU and requests), worker
# (autoscaled on Celery queue depth), beat (exactly one), and a one-off migrate task. One
# image, the role chosen by command. Tasks run in private subnets without public IPs, as a
# non-root user on a read-only root filesystem (/tmp is a scratch volume); secrets come from
# Secrets Manager; logs go to CloudWatch, encrypted.

data "aws_region" "current" {}

locals {
  metrics_namespace = "Litebase/${var.name}"
  smtp              = var.smtp_credentials_secret_arn != ""
  smtp_settings = {
    MAIL_BACKEND  = "smtp"
    SMTP_HOST     = var.smtp_host != "" ? var.smtp_host : "email-smtp.${data.aws_region.current.name}.amazonaws.com"
    SMTP_PORT     = "587"
    SMTP_SECURITY = "starttls"
  }
  environment = merge(
    {
      LITEBASE_ENV            = "prod"
      LOG_FORMAT              = "json"
      DATABASE_URL            = var.database_url
      REDIS_URL               = var.redis_url
      QUEUE_METRICS_NAMESPACE = local.metrics_namespace
    },
    # Mail over SMTP submission with STARTTLS (the network opens port 587 to the workers).
    { for name, value in local.smtp_settings : name => value if local.smtp },
    var.environment,
  )
  secrets = concat(
    [
      { name = "SECRET_KEY", valueFrom = aws_secretsmanager_secret.secret_key.arn },
      { name = "DATABASE_PASSWORD", valueFrom = "${var.database_password_secret_arn}:password::" },
      { name = "REDIS_PASSWORD", valueFrom = var.redis_password_secret_arn },
    ],
    var.openai_api_key_secret_arn == "" ? [] : [
      { name = "OPENAI_API_KEY", valueFrom = var.openai_api_key_secret_arn },
    ],
    local.smtp ? [
      { name = "SMTP_USERNAME", valueFrom = "${var.smtp_credentials_secret_arn}:username::" },
      { name = "SMTP_PASSWORD", valueFrom = "${var.smtp_credentials_secret_arn}:password::" },
    ] : [],
  )
  secret_arns = compact([
    aws_secretsmanager_secret.secret_key.arn,
    var.database_password_secret_arn,
    var.redis_password_secret_arn,
    var.openai_api_key_secret_arn,
    var.smtp_credentials_secret_arn,
  ])
}

# --- the app's own secret ----------------------------------------------------------------

resource "random_password" "secret_key" {
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "secret_key" {
  #checkov:skip=CKV2_AWS_57:Rotating SECRET_KEY signs everyone out; rotate it deliberately (docs/deploy.md).
  name_prefix = "${var.name}-secret-key-"
  description = "SECRET_KEY for ${var.name} (signs access tokens)"
  kms_key_id  = var.kms_key_arn
  tags        = var.tags
}

resource "aws_secretsmanager_secret_version" "secret_key" {
  secret_id     = aws_secretsmanager_secret.secret_key.id
  secret_string = random_password.secret_key.result
}

# --- cluster and logs --------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "this" {
  name              = "/litebase/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_ecs_cluster" "this" {
  name = var.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
  configuration {
    execute_command_configuration {
      kms_key_id = var.kms_key_arn
      logging    = "OVERRIDE"
      log_configuration {
        cloud_watch_encryption_enabled = true
        cloud_watch_log_group_name     = aws_cloudwatch_log_group.this.name
      }
    }
  }
  tags = var.tags
}

# --- roles: execution (pull, logs, secrets) apart from the task's own --------------------

data "aws_iam_policy_document" "ecs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "PullToken"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # this action takes no resource
  }
  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [var.ecr_repository_arn]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }
  statement {
    sid       = "Secrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.secret_arns
  }
  statement {
    sid       = "DecryptSecrets"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-ecs-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "execution" {
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# The tasks' own role: the files bucket (metrics leave as structured logs), nothing else, and
# apart from the execution role's rights.
resource "aws_iam_role" "task" {
  name               = "${var.name}-ecs-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "task" {
  statement {
    sid       = "FilesObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = ["${var.files_bucket_arn}/*"]
  }
  statement {
    sid       = "FilesListing"
    actions   = ["s3:ListBucket"]
    resources = [var.files_bucket_arn]
  }
  statement {
    sid       = "FilesEncryption"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "task" {
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# --- task definitions --------------------------------------------------------------------

locals {
  roles = {
    api = {
      cpu     = var.api_cpu
      memory  = var.api_memory
      command = ["api", "--port", "8000"]
      ports   = [{ containerPort = 8000, protocol = "tcp" }]
      health = {
        command     = ["CMD", "python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]
        interval    = 15
        timeout     = 5
        retries     = 3
        startPeriod = 30
      }
    }
    worker = {
      cpu     = var.worker_cpu
      memory  = var.worker_memory
      command = ["worker", "--concurrency", tostring(var.worker_concurrency)]
      ports   = []
      health  = null
    }
    beat = {
      cpu     = 256
      memory  = 512
      command = ["beat", "--schedule", "/tmp/celerybeat-schedule"]
      ports   = []
      health  = null
    }
    migrate = {
      cpu     = 512
      memory  = 1024
      command = ["migrate"]
      ports   = []
      health  = null
    }
  }
}

resource "aws_ecs_task_definition" "this" {
  for_each                 = local.roles
  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }
  volume {
    name = "tmp"
  }
  container_definitions = jsonencode([
    merge(
      {
        name                   = each.key
        image                  = var.image
        command                = each.value.command
        essential              = true
        user                   = "10001:10001"
        privileged             = false
        readonlyRootFilesystem = true
        portMappings           = each.value.ports
        environment            = [for key, value in local.environment : { name = key, value = value }]
        secrets                = local.secrets
        mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
        linuxParameters        = { initProcessEnabled = true }
        stopTimeout            = 30
        logConfiguration = {
          logDriver = "awslogs"
          options = {
            awslogs-group         = aws_cloudwatch_log_group.this.name
            awslogs-region        = data.aws_region.current.name
            awslogs-stream-prefix = each.key
          }
        }
      },
      each.value.health == null ? {} : { healthCheck = each.value.health },
    )
  ])
  tags = var.tags
}

# --- services ----------------------------------------------------------------------------

resource "aws_ecs_service" "api" {
  name                               = "api"
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.this["api"].arn
  desired_count                      = var.api_count.desired
  launch_type                        = "FARGATE"
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 60
  propagate_tags                     = "SERVICE"
  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [var.api_security_group_id]
    assign_public_ip = false
  }
  load_balancer {
    target_group_arn = var.target_group_arn
    container_name   = "api"
    container_port   = 8000
  }
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  lifecycle {
    ignore_changes = [desired_count] # autoscaling owns it
  }
  tags = var.tags
}

resource "aws_ecs_service" "worker" {
  name                               = "worker"
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.this["worker"].arn
  desired_count                      = var.worker_count.desired
  launch_type                        = "FARGATE"
  deployment_minimum_healthy_percent = 50
  deployment_maximum_percent         = 200
  propagate_tags                     = "SERVICE"
  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [var.worker_security_group_id]
    assign_public_ip = false
  }
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  lifecycle {
    ignore_changes = [desired_count]
  }
  tags = var.tags
}

# Exactly one beat: a deploy stops the old one before starting the new (never two at once,
# which would schedule every periodic task twice).
resource "aws_ecs_service" "beat" {
  name                               = "beat"
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.this["beat"].arn
  desired_count                      = 1
  launch_type                        = "FARGATE"
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100
  propagate_tags                     = "SERVICE"
  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [var.worker_security_group_id]
    assign_public_ip = false
  }
  tags = var.tags
}

# --- autoscaling -------------------------------------------------------------------------

resource "aws_appautoscaling_target" "api" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.api.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.api_count.min
  max_capacity       = var.api_count.max
}

resource "aws_appautoscaling_policy" "api_cpu" {
  name               = "${var.name}-api-cpu"
  service_namespace  = aws_appautoscaling_target.api.service_namespace
  resource_id        = aws_appautoscaling_target.api.resource_id
  scalable_dimension = aws_appautoscaling_target.api.scalable_dimension
  policy_type        = "TargetTrackingScaling"
  target_tracking_scaling_policy_configuration {
    target_value = var.api_cpu_target
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "api_requests" {
  name               = "${var.name}-api-requests"
  service_namespace  = aws_appautoscaling_target.api.service_namespace
  resource_id        = aws_appautoscaling_target.api.resource_id
  scalable_dimension = aws_appautoscaling_target.api.scalable_dimension
  policy_type        = "TargetTrackingScaling"
  target_tracking_scaling_policy_configuration {
    target_value = var.api_requests_per_target
    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = var.request_count_label
    }
  }
}

resource "aws_appautoscaling_target" "worker" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.worker.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.worker_count.min
  max_capacity       = var.worker_count.max
}

# Beat logs each Celery queue's length, and their sum (Queue = "all"), every minute in
# CloudWatch's embedded metric format (QUEUE_METRICS_NAMESPACE); CloudWatch turns those log
# lines into this metric. A worker task runs both pools (jobs, and the rest): it scales on all.
resource "aws_appautoscaling_policy" "worker_queue" {
  name               = "${var.name}-worker-queue"
  service_namespace  = aws_appautoscaling_target.worker.service_namespace
  resource_id        = aws_appautoscaling_target.worker.resource_id
  scalable_dimension = aws_appautoscaling_target.worker.scalable_dimension
  policy_type        = "TargetTrackingScaling"
  target_tracking_scaling_policy_configuration {
    target_value       = var.worker_queue_depth_target
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    customized_metric_specification {
      metric_name = "CeleryQueueDepth"
      namespace   = local.metrics_namespace
      statistic   = "Average"
      dimensions {
        name  = "Queue"
        value = "all"
      }
    }
  }
}
